"""Neural bitstream -> video file: the ``vinr decode`` command and the ``decode`` job run this."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.bitstream.container import MAX_FILE, BitstreamError
from models.nrff.decode import open_bitstream
from worker.errors import CancelledError, InputError, ParameterError
from worker.media import EncodeOptions, VideoWriter, even_size


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


def read_bitstream(path: str | Path) -> bytes:
    """The file's bytes, refusing anything larger than the container allows before reading it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"read_bitstream: {path} does not exist or is not a file")
    if path.stat().st_size > MAX_FILE:
        raise InputError(f"read_bitstream: {path} is larger than {MAX_FILE} bytes")
    return path.read_bytes()


def run_decode(
    source: str | Path,
    output: str | Path,
    frames: str | None = None,
    encode: EncodeOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    atomic: bool = True,
) -> DecodeResult:
    """Decode ``source`` (a .nrff file) into a video at ``output``."""
    started = time.perf_counter()
    try:
        decoder = open_bitstream(read_bitstream(source))
    except BitstreamError as exc:
        raise InputError(f"run_decode: {source}: {exc}") from exc
    header = decoder.header
    start, stop = parse_range(frames, header.frames)
    options = encode or EncodeOptions()
    size = even_size(header.width, header.height, options.output_pix_fmt())
    if size != (header.width, header.height):
        raise ParameterError(
            f"run_decode: {options.output_pix_fmt()} needs an even size; the video is "
            f"{header.width}x{header.height} (use --pix-fmt yuv444p or --codec ffv1)"
        )
    with VideoWriter(output, header.width, header.height, header.fps, options, atomic=atomic) as writer:
        for index, image in decoder.frames(start, stop):
            if should_stop and should_stop():
                raise CancelledError("run_decode: cancelled")
            writer.write(image, (index - start) / float(header.fps))
            if progress:
                progress(index - start + 1, stop - start)
        path = writer.close()
    return DecodeResult(path, stop - start, header.width, header.height, time.perf_counter() - started)
