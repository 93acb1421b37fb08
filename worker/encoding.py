"""Video(s) -> neural bitstream: the ``vinr encode`` command runs this (NRFF or D-NeRV)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from models import codecs
from models.codecs import EncodeOptions, Video
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


def collection(source: Path, segment: int) -> list[Video]:
    """The videos of a library: every video in a folder, or one video cut into ``segment``-frame videos."""
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
    *,
    codec: str = codecs.NAMES[0],
    bpp: float = 0.1,
    minutes: float | None = 2.0,
    steps: int = 3000,
    device: str = "auto",
    segment: int = 32,
    progress: Callable[[dict], None] | None = None,
    weight_bits: int = 8,
    residual_share: float | None = None,
) -> EncodeResult:
    """Fit ``codec`` to ``source`` (a video, or for a library codec a folder of videos or one video cut into
    ``segment``-frame videos) and write ``output`` atomically (``residual_share``: NRFF's share of the bits
    for its latent residual; None: by the rate)."""
    source, output = Path(source), Path(output)
    if not output.parent.is_dir():
        raise OutputError(f"run_encode: folder {output.parent} does not exist")
    if not 0 < bpp <= 8:
        raise ParameterError(f"run_encode: bpp must be in (0, 8], got {bpp:g}")
    if segment < 1:
        raise ParameterError(f"run_encode: segment must be positive, got {segment}")
    try:
        chosen = codecs.get(codec)
        options = EncodeOptions(
            bpp=bpp, minutes=minutes, steps=steps, weight_bits=weight_bits, residual_share=residual_share
        )
        chosen.check(options)
    except ValueError as exc:
        raise ParameterError(f"run_encode: {exc}") from exc
    target = choose_device(device)
    videos = collection(source, segment) if chosen.many_videos else [Video(source.stem, *read_video(source))]
    try:
        data = chosen.encode(videos, options, target, progress)
    except ValueError as exc:
        raise ParameterError(f"run_encode: {exc}") from exc
    pixels, count = sum(v.frames[..., 0].size for v in videos), sum(len(v.frames) for v in videos)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_bytes(data)
    partial.replace(output)
    return EncodeResult(output, len(data), pixels, count)
