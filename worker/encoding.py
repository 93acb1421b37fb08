"""Video(s) -> neural bitstream: the ``vinr encode`` command runs this (NRFF or D-NeRV)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from worker.errors import InputError, OutputError, ParameterError
from worker.media import CONTAINERS, VideoReader
from worker.runtime import choose_device

VIDEO_SUFFIXES = (*CONTAINERS, ".avi", ".m2ts", ".ts", ".y4m")
"""Files a folder given to ``encode --codec dnerv`` contributes."""


@dataclass
class EncodeResult:
    output: Path
    bytes: int
    pixels: int
    frames: int

    @property
    def bpp(self) -> float:
        return 8 * self.bytes / self.pixels


def read_video(path: Path) -> tuple[np.ndarray, Fraction]:
    """All frames ``(T, H, W, 3)`` uint8 and the frame rate."""
    with VideoReader(path) as reader:
        frames = np.stack([(f.image * 255 + 0.5).astype(np.uint8) for f in reader.frames()])
        return frames, reader.info.fps


def collection(source: Path, segment: int):
    """The videos of a D-NeRV library: every video in a folder, or one video cut into segments."""
    from models.dnerv.fit import Video

    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not paths:
            raise InputError(f"collection: no videos in {source}")
        return [Video(p.stem, *read_video(p)) for p in paths]
    frames, fps = read_video(source)
    return [
        Video(f"{source.stem}#{i // segment}", frames[i : i + segment], fps) for i in range(0, len(frames), segment)
    ]


def run_encode(
    source: str | Path,
    output: str | Path,
    codec: str = "nrff",
    bpp: float = 0.1,
    minutes: float | None = 2.0,
    steps: int = 3000,
    device: str = "auto",
    segment: int = 32,
    progress: Callable[[dict], None] | None = None,
    weight_bits: int = 8,
    residual_share: float | None = None,
) -> EncodeResult:
    """Fit the codec to ``source`` and write ``output`` atomically (``residual_share``: NRFF's share of
    the bits for its latent residual; None: by the rate)."""
    source, output = Path(source), Path(output)
    if not output.parent.is_dir():
        raise OutputError(f"run_encode: folder {output.parent} does not exist")
    if not 0 < bpp <= 8:
        raise ParameterError(f"run_encode: bpp must be in (0, 8], got {bpp:g}")
    if segment < 1:
        raise ParameterError(f"run_encode: segment must be positive, got {segment}")
    if residual_share is not None and (codec != "nrff" or not 0 <= residual_share <= 0.9):
        raise ParameterError(f"run_encode: residual share must be in [0, 0.9], for nrff only; got {residual_share:g}")
    target = choose_device(device)
    if codec == "nrff":
        from models.nrff.fit import WEIGHT_BITS, FitOptions, fit

        if weight_bits not in WEIGHT_BITS:
            raise ParameterError(f"run_encode: weight bits must be one of {sorted(WEIGHT_BITS)}, not {weight_bits}")
        frames, fps = read_video(source)
        options = FitOptions(
            bpp=bpp, minutes=minutes, steps=steps, weight_bits=weight_bits, residual_share=residual_share
        )
        data = fit(frames, fps, options, target, progress)
        pixels, count = frames[..., 0].size, len(frames)
    elif codec == "dnerv":
        from models.dnerv.fit import DNeRVOptions, fit

        videos = collection(source, segment)
        try:
            data = fit(videos, DNeRVOptions(bpp=bpp, minutes=minutes, steps=steps), target, progress)
        except ValueError as exc:
            raise ParameterError(str(exc)) from exc
        pixels, count = sum(v.frames[..., 0].size for v in videos), sum(len(v.frames) for v in videos)
    else:
        raise ParameterError(f"run_encode: unknown codec {codec!r}; choose nrff or dnerv")
    partial = output.with_name(f".{output.name}.partial")
    partial.write_bytes(data)
    partial.replace(output)
    return EncodeResult(output, len(data), pixels, count)
