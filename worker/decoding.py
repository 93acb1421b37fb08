"""Neural bitstream -> video file: the ``vinr decode`` command and the ``decode`` job run this.

NRFF files hold one video; D-NeRV libraries hold many, of which one (by name or index) is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models import codecs
from models.bitstream import container
from models.bitstream.container import MAX_FILE, BitstreamError
from models.codecs import Source
from models.probe import FrameRangeError, OutputLimitError, UnknownVideoError, check_bitstream
from worker.errors import CanceledError, InputError, ParameterError
from worker.media import OutputOptions, VideoWriter, even_size


def open_source(data: bytes, index: int = 0) -> Source:
    """Video ``index`` of the bitstream ``data`` (0 for a codec with one video a file)."""
    header, _ = container.parse_header(data)
    try:
        codec = codecs.get(header.codec)
    except ValueError as exc:
        raise BitstreamError(f"open_source: {exc}") from exc
    return codec.open(data, index)


@dataclass
class DecodeResult:
    output: Path
    frames: int
    width: int
    height: int
    seconds: float


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


def run_decode(
    source: str | Path,
    output: str | Path,
    frames: str | None = None,
    options: OutputOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    atomic: bool = True,
    video: str | None = None,
    output_limit: Callable[[int, int, int], str | None] | None = None,
    origin: int | None = None,
) -> DecodeResult:
    """Decode ``source`` (.nrff, or one ``video`` of a .dnerv library) into a video at ``output``.

    ``output_limit(width, height, frames)`` says why the output is too large (ParameterError), or None.
    Frame ``i`` is shown at ``(i - origin) / fps`` (``origin``: the range's start; a segment of a longer
    decode gives the whole range's).
    """
    started = time.perf_counter()
    try:
        probe = check_bitstream(existing_file(source), video, frames, output_limit)
        chosen = open_source(read_bitstream(source), probe.video)
    except BitstreamError as exc:
        raise InputError(f"run_decode: {source}: {exc}") from exc
    except (UnknownVideoError, FrameRangeError, OutputLimitError) as exc:
        raise ParameterError(f"run_decode: {exc}") from exc
    start, stop = probe.start, probe.stop
    origin = start if origin is None else origin
    options = options or OutputOptions()
    width, height = chosen.width, chosen.height
    if even_size(width, height, options.output_pix_fmt()) != (width, height):
        raise ParameterError(
            f"run_decode: {options.output_pix_fmt()} needs an even size; the video is "
            f"{width}x{height} (use --pix-fmt yuv444p or --codec ffv1)"
        )
    with VideoWriter(output, width, height, chosen.fps, options, atomic=atomic) as writer:
        for index, image in chosen.render(start, stop):
            if should_stop and should_stop():
                raise CanceledError("run_decode: canceled")
            writer.write(image, (index - origin) / float(chosen.fps))
            if progress:
                progress(index - start + 1, stop - start)
        path = writer.close()
    return DecodeResult(path, stop - start, width, height, time.perf_counter() - started)
