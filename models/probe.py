"""What a neural bitstream file holds, checked before it is decoded: codec, the chosen video, its frames.

The gateway runs this on an upload before queueing it, so memory stays bounded whatever the file
claims: sections are verified in chunks (``container.scan``) and only the small CONF section and the
chosen video's keyframes are read; the keyframes are decoded, so a file whose CRCs are right but whose
keyframes are not is refused here rather than in the job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from models import codecs
from models.bitstream import container, keyframes
from models.bitstream.container import BitstreamError
from models.bitstream.library import UnknownVideoError
from models.codecs import Probe, read_at

__all__ = [
    "FrameRangeError",
    "NotABitstreamError",
    "OutputLimitError",
    "Probe",
    "UnknownVideoError",
    "check_bitstream",
    "probe_file",
]

REQUIRED = {"CONF", "KEYF"}
"""Sections every NRFF file and D-NeRV library holds; the weights are in ``WGTS`` (whole) or, in a
D-NeRV library made with a base decoder, ``DLTA`` (the difference from the base)."""


class NotABitstreamError(BitstreamError):
    """The file does not start with the container's magic bytes (some other format)."""


class FrameRangeError(ValueError):
    """A requested frame range is malformed or outside the video."""


class OutputLimitError(ValueError):
    """The decoded output would pass a limit the caller set."""


def probe_file(path: str | Path, video: str | None = None) -> Probe:
    """Verify ``path`` and describe the video it decodes to; BitstreamError, UnknownVideoError."""
    path = Path(path)
    with path.open("rb") as handle:
        header, sections = container.scan(handle, path.stat().st_size)
        missing = REQUIRED - set(sections)
        if missing:
            raise BitstreamError(f"probe: missing sections {sorted(missing)}")
        conf_offset, conf_length = sections["CONF"]
        if conf_length > 1 << 20:
            raise BitstreamError("probe: the CONF section is too large")
        conf = read_at(handle, conf_offset, conf_length)
        try:
            codec = codecs.get(header.codec)
        except ValueError as exc:
            raise BitstreamError(f"probe: {exc}") from exc
        probed = codec.probe(codecs.OpenFile(handle=handle, header=header, sections=sections, conf=conf, video=video))
    if probed.weights not in sections:
        raise BitstreamError(f"probe: missing section {probed.weights}")
    probe = probed.probe
    decoded = keyframes.decode(probed.keyframes, probe.width, probe.height, max_frames=probed.keyframe_count)
    if len(decoded) != probed.keyframe_count:
        raise BitstreamError(f"probe: {len(decoded)} keyframes where {probed.keyframe_count} are needed")
    return probe


def frame_range(text: str | None, frames: int) -> tuple[int, int]:
    """``"a:b"`` (either side may be empty) -> a checked half-open frame range; FrameRangeError."""
    if not text:
        return 0, frames
    start_text, sep, stop_text = text.partition(":")
    try:
        start = int(start_text) if start_text else 0
        stop = int(stop_text) if stop_text else frames
    except ValueError as exc:
        raise FrameRangeError(f"frame range {text!r} is not START:STOP") from exc
    if not sep or not 0 <= start < stop <= frames:
        raise FrameRangeError(f"frame range {text!r} is not within 0:{frames}")
    return start, stop


Limit = Callable[[int, int, int], "str | None"]
"""``limit(width, height, frames)``: why an output that large is refused, or None."""


def check_bitstream(
    path: str | Path, video: str | None = None, frames: str | None = None, limit: Limit | None = None
) -> Probe:
    """Everything a decode needs checked, in the order that bounds the work: the magic and header
    (``limit`` on one frame before anything else is read), every section's CRC, the chosen video and
    its keyframes, the frame range, then ``limit`` on the range. The callers map the typed errors
    (BitstreamError, UnknownVideoError, FrameRangeError, OutputLimitError) to 415/422 or exit codes."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(container.HEADER.size + 4)
    if head[: len(container.MAGIC)] != container.MAGIC:
        raise NotABitstreamError(f"not a vinr bitstream (magic {container.MAGIC.decode()!r})")
    header, _ = container.parse_header(head)
    if limit and (problem := limit(header.width, header.height, 1)):
        raise OutputLimitError(problem)
    probe = probe_file(path, video)
    start, stop = frame_range(frames, probe.frames)
    if limit and (problem := limit(probe.width, probe.height, stop - start)):
        raise OutputLimitError(problem)
    return dataclasses.replace(probe, start=start, stop=stop)
