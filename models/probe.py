"""What a neural bitstream file holds, checked before it is decoded: codec, the chosen video, its frames.

The gateway runs this on an upload before queueing it, so memory stays bounded whatever the file
claims: sections are verified in chunks (``container.scan``) and only the small CONF section and the
chosen video's keyframes are read; the keyframes are decoded, so a file whose CRCs are right but whose
keyframes are not is refused here rather than in the job.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from models.bitstream import container, keyframes
from models.bitstream.container import BitstreamError
from models.bitstream.library import UnknownVideoError, choose_video

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


@dataclass(frozen=True)
class Probe:
    """The video a decode would produce."""

    header: container.Header
    video: int
    name: str | None
    frames: int
    fps: Fraction

    start: int = 0
    stop: int = 0
    """The frame range to decode, half-open (the whole video unless a range was asked for)."""
    size: tuple[int, int] | None = None
    """The chosen video's (width, height) where it differs from the header's (a D-NeRV library)."""

    @property
    def width(self) -> int:
        return self.size[0] if self.size else self.header.width

    @property
    def height(self) -> int:
        return self.size[1] if self.size else self.header.height


def read_at(handle: BinaryIO, offset: int, length: int) -> bytes:
    handle.seek(offset)
    data = handle.read(length)
    if len(data) != length:
        raise BitstreamError("probe: the file changed while it was read")
    return data


def dnerv_keyframes(handle: BinaryIO, section: tuple[int, int], videos: int, chosen: int) -> bytes:
    """One video's keyframe payload from a D-NeRV KEYF section (index read first, then only that slice)."""
    offset, length = section
    index_size = 4 + 8 * videos
    if length < index_size:
        raise BitstreamError("probe: the KEYF index is truncated")
    (count,) = struct.unpack("<I", read_at(handle, offset, 4))
    if count != videos:
        raise BitstreamError(f"probe: KEYF has {count} entries for {videos} videos")
    start, size = struct.unpack("<II", read_at(handle, offset + 4 + 8 * chosen, 8))
    if start < index_size or start + size > length:
        raise BitstreamError(f"probe: KEYF entry {chosen} points outside the section")
    return read_at(handle, offset + start, size)


def probe_file(path: str | Path, video: str | None = None) -> Probe:
    """Verify ``path`` and describe the video it decodes to; BitstreamError, UnknownVideoError."""
    from models.dnerv.base import check_base
    from models.dnerv.decode import read_config as dnerv_config
    from models.dnerv.decode import weights_section as dnerv_weights
    from models.dnerv.network import keyframe_indices as dnerv_key_indices
    from models.nrff.decode import read_config as nrff_config
    from models.nrff.network import keyframe_indices as nrff_key_indices

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
        if header.codec == "nrff":
            config = nrff_config(conf)
            weights = "WGTS"
            payload = read_at(handle, *sections["KEYF"])
            count = len(nrff_key_indices(header.frames, config["gop"]))
            probe = Probe(header, 0, None, header.frames, header.fps, 0, header.frames)
        else:
            config = dnerv_config(conf, header)
            weights = dnerv_weights(config)
            if config.get("base"):  # a base this vinr does not ship, or another version of it, is refused now
                check_base(config["base"]["name"], config["base"]["sha256"])
            videos = config["videos"]
            chosen = choose_video(videos, video)
            entry = videos[chosen]
            payload = dnerv_keyframes(handle, sections["KEYF"], len(videos), chosen)
            count = len(dnerv_key_indices(entry["frames"], config["gop"]))
            size = (entry["width"], entry["height"])
            probe = Probe(
                header, chosen, entry["name"], entry["frames"], Fraction(*entry["fps"]), 0, entry["frames"], size
            )
    if weights not in sections:
        raise BitstreamError(f"probe: missing section {weights}")
    decoded = keyframes.decode(payload, probe.width, probe.height, max_frames=count)
    if len(decoded) != count:
        raise BitstreamError(f"probe: {len(decoded)} keyframes where {count} are needed")
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
