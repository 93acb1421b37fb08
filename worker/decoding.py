"""Neural bitstream -> video file: the ``vinr decode`` command and the ``decode`` job run this.

NRFF files hold one video; D-NeRV libraries hold many, of which one (by name or index) is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from models.bitstream import container
from models.bitstream.container import MAX_FILE, BitstreamError
from models.dnerv.decode import open_library
from models.nrff.decode import open_bitstream
from models.probe import UnknownVideoError
from worker.errors import CancelledError, InputError, ParameterError
from worker.media import EncodeOptions, VideoWriter, even_size


@dataclass
class Source:
    """One decodable video of a bitstream: its size, rate, frame count and a frame renderer."""

    width: int
    height: int
    fps: Fraction
    count: int
    render: Callable[[int, int], Iterator[tuple[int, np.ndarray]]]


def open_source(data: bytes, video: str | None = None) -> Source:
    """The video to decode: the whole NRFF file, or one video of a D-NeRV library (by name or index)."""
    header, _ = container.parse_header(data)
    if header.codec == "nrff":
        decoder = open_bitstream(data)
        return Source(header.width, header.height, header.fps, header.frames, decoder.frames)
    library = open_library(data)
    try:
        index = library.find(video)
    except UnknownVideoError as exc:
        raise ParameterError(f"open_source: {exc}") from exc
    library.keyframes(index)  # decoded now: bad keyframes are an unreadable input, not a failure mid-decode
    count = library.videos[index]["frames"]
    return Source(
        header.width, header.height, library.fps(index), count, lambda start, stop: library.frames(index, start, stop)
    )


@dataclass
class DecodeResult:
    output: Path
    frames: int
    width: int
    height: int
    seconds: float


def parse_range(text: str | None, frames: int) -> tuple[int, int]:
    """``"a:b"`` (either side may be empty) -> a checked half-open frame range."""
    if not text:
        return 0, frames
    start_text, sep, stop_text = text.partition(":")
    try:
        start = int(start_text) if start_text else 0
        stop = int(stop_text) if stop_text else frames
    except ValueError as exc:
        raise ParameterError(f"parse_range: {text!r} is not START:STOP") from exc
    if not sep or not 0 <= start < stop <= frames:
        raise ParameterError(f"parse_range: {text!r} is not a range within 0:{frames}")
    return start, stop


def existing_file(path: str | Path) -> Path:
    """``path`` as a Path; InputError unless it is a file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"read_bitstream: {path} does not exist or is not a file")
    return path


def read_bitstream(path: str | Path) -> bytes:
    """The file's bytes, refusing anything larger than the container allows before reading it."""
    path = existing_file(path)
    if path.stat().st_size > MAX_FILE:
        raise InputError(f"read_bitstream: {path} is larger than {MAX_FILE} bytes")
    return path.read_bytes()


def read_bitstream_head(path: str | Path) -> bytes:
    """The first bytes of a bitstream: enough for its header."""
    with existing_file(path).open("rb") as handle:
        return handle.read(container.HEADER.size + 4)


def run_decode(
    source: str | Path,
    output: str | Path,
    frames: str | None = None,
    encode: EncodeOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    atomic: bool = True,
    video: str | None = None,
    output_limit: Callable[[int, int, int], str | None] | None = None,
) -> DecodeResult:
    """Decode ``source`` (.nrff, or one ``video`` of a .dnerv library) into a video at ``output``.

    ``output_limit(width, height, frames)`` says why the output is too large (ParameterError), or None.
    """
    started = time.perf_counter()
    try:
        header, _ = container.parse_header(read_bitstream_head(source))
        if output_limit and (problem := output_limit(header.width, header.height, 1)):
            raise ParameterError(f"run_decode: {problem}")  # before anything is decoded
        chosen = open_source(read_bitstream(source), video)
    except BitstreamError as exc:
        raise InputError(f"run_decode: {source}: {exc}") from exc
    start, stop = parse_range(frames, chosen.count)
    if output_limit and (problem := output_limit(chosen.width, chosen.height, stop - start)):
        raise ParameterError(f"run_decode: {problem}")
    options = encode or EncodeOptions()
    width, height = chosen.width, chosen.height
    if even_size(width, height, options.output_pix_fmt()) != (width, height):
        raise ParameterError(
            f"run_decode: {options.output_pix_fmt()} needs an even size; the video is "
            f"{width}x{height} (use --pix-fmt yuv444p or --codec ffv1)"
        )
    with VideoWriter(output, width, height, chosen.fps, options, atomic=atomic) as writer:
        for index, image in chosen.render(start, stop):
            if should_stop and should_stop():
                raise CancelledError("run_decode: cancelled")
            writer.write(image, (index - start) / float(chosen.fps))
            if progress:
                progress(index - start + 1, stop - start)
        path = writer.close()
    return DecodeResult(path, stop - start, width, height, time.perf_counter() - started)
