"""What a neural bitstream file holds, checked before it is decoded: codec, the chosen video, its frames.

The gateway runs this on an upload before queueing it, so memory stays bounded whatever the file
claims: sections are verified in chunks (``container.scan``) and only the small CONF section and the
chosen video's keyframes are read; the keyframes are decoded, so a file whose CRCs are right but whose
keyframes are not is refused here rather than in the job.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from models.bitstream import container, keyframes
from models.bitstream.container import BitstreamError

REQUIRED = {"CONF", "KEYF", "WGTS"}
"""Sections every NRFF file and D-NeRV library holds."""


class UnknownVideoError(LookupError):
    """A D-NeRV library has no video of the requested name or index."""


@dataclass(frozen=True)
class Probe:
    """The video a decode would produce."""

    header: container.Header
    video: int
    name: str | None
    frames: int
    fps: Fraction

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height


def read_at(handle: BinaryIO, offset: int, length: int) -> bytes:
    handle.seek(offset)
    data = handle.read(length)
    if len(data) != length:
        raise BitstreamError("probe: the file changed while it was read")
    return data


def choose_video(videos: list[dict], video: str | None) -> int:
    """A video's index from its name or number (the first when None); UnknownVideoError if none."""
    names = [v["name"] for v in videos]
    if video is None:
        return 0
    if video in names:
        return names.index(video)
    if video.isdigit() and int(video) < len(names):
        return int(video)
    raise UnknownVideoError(f"no video {video!r} in the library; it holds {names}")


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
    # imported here: the codecs' decoders import choose_video from this module
    from models.dnerv.decode import read_config as dnerv_config
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
            payload = read_at(handle, *sections["KEYF"])
            count = len(nrff_key_indices(header.frames, config["gop"]))
            probe = Probe(header, 0, None, header.frames, header.fps)
        else:
            config = dnerv_config(conf, header)
            videos = config["videos"]
            chosen = choose_video(videos, video)
            entry = videos[chosen]
            payload = dnerv_keyframes(handle, sections["KEYF"], len(videos), chosen)
            count = len(dnerv_key_indices(entry["frames"], config["preset"]["clip"]))
            probe = Probe(header, chosen, entry["name"], entry["frames"], Fraction(*entry["fps"]))
    decoded = keyframes.decode(payload, header.width, header.height, max_frames=count)
    if len(decoded) != count:
        raise BitstreamError(f"probe: {len(decoded)} keyframes where {count} are needed")
    return probe
