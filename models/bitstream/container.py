"""The vinr neural-video container: a versioned header and CRC-checked sections.

Byte layout (all integers little-endian)::

    offset size  field
    0      4     magic  b"VINR"
    4      1     version (4; files of versions 1 to 3 are read too)
    5      1     codec id (1 = NRFF, 2 = D-NeRV)
    6      2     section count n (<= MAX_SECTIONS)
    8      2     width  (1 .. MAX_VIDEO_SIDE)
    10     2     height (1 .. MAX_VIDEO_SIDE)
    12     4     frame count (1 .. MAX_FRAMES)
    16     4     frame rate numerator   (1 .. 1_000_000)
    20     4     frame rate denominator (1 .. 1_000_000)
    24     1     colour matrix (ITU-T H.273 code: 1 = BT.709, 6 = BT.601; the frames are RGB)
    25     1     colour range (1 = limited, 2 = full)
    26     2     reserved (0)
    28     4     CRC32 of bytes 0..27
    32     ...   n sections, each:
                   4  tag (ASCII, e.g. b"CONF", b"KEYF", b"WGTS")
                   4  payload length L (<= what is left of the file)
                   4  CRC32 of tag, length and payload
                   L  payload

The codec decides what its sections hold (``models/nrff/fit.py``, ``models/dnerv/fit.py``). ``parse`` checks every
bound before it allocates and raises ``BitstreamError`` for anything malformed; nothing is ever
unpickled, and the worst-case decoded size is bounded by the header limits below.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

MAGIC = b"VINR"
VERSION = 4
"""The version written. 2: D-NeRV libraries of videos of different sizes, whose header holds the
largest size, and libraries that reference a shipped base decoder. 3: NRFF files may carry a latent
residual (a RESD section; a version-2 reader would ignore it and decode wrong pictures, so it must
refuse the file). 4: the latent residual's values are context-coded (``models/bitstream/contexts.py``;
a version-3 reader would misread the RESD section). Every earlier version is still read."""
READABLE = (1, 2, 3, 4)
NEURAL_CODECS = {1: "nrff", 2: "dnerv"}
"""Codec id -> name."""
MAX_VIDEO_SIDE = 8192
"""Largest width or height of a video a bitstream holds, pixels (the upsampler's output limit is
``worker.planning.MAX_SIDE``)."""
MAX_FRAMES = 100_000
"""Largest frame count accepted."""
MAX_PIXELS = 2 * 10**9
"""Largest width x height x frames accepted (bounds the decoded size)."""
MAX_SECTIONS = 64
MAX_FILE = 1 << 30
"""Largest file accepted, bytes."""
CHUNK = 1 << 20
"""Bytes per read when verifying a file's sections (``scan``)."""
HEADER = struct.Struct("<4sBBHHHIIIBBH")
SECTION = struct.Struct("<4sII")


class BitstreamError(ValueError):
    """A bitstream is malformed, truncated, corrupt, too large or of an unknown codec."""


@dataclass
class Header:
    """What every vinr bitstream says about its video."""

    codec: str
    width: int
    height: int
    frames: int
    fps: Fraction
    matrix: int = 1
    color_range: int = 1


@dataclass
class Bitstream:
    """A parsed (or to-be-written) file: its header and its sections by tag, in order."""

    header: Header
    sections: dict[str, bytes] = field(default_factory=dict)


def check_limits(fields: dict, limits: dict[str, tuple[int, int]], label: str = "") -> None:
    """Every field named in ``limits`` is an integer within its range (a CONF entry), else BitstreamError."""
    for key, (low, high) in limits.items():
        value = fields.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise BitstreamError(f"read_config: {label}{key}={value!r} outside {low}..{high}")


MATRICES = {1: "BT.709", 6: "BT.601"}
"""Colour matrices a header may name (ITU-T H.273 codes)."""
RANGES = {1: "limited", 2: "full"}
"""Colour ranges a header may name."""


def check_header(h: Header) -> None:
    """Refuse sizes beyond the limits (for writing and reading alike)."""
    if h.codec not in NEURAL_CODECS.values():
        raise BitstreamError(f"check_header: unknown codec {h.codec!r}")
    if not (1 <= h.width <= MAX_VIDEO_SIDE and 1 <= h.height <= MAX_VIDEO_SIDE):
        raise BitstreamError(f"check_header: size {h.width}x{h.height} outside 1..{MAX_VIDEO_SIDE}")
    if not 1 <= h.frames <= MAX_FRAMES:
        raise BitstreamError(f"check_header: {h.frames} frames outside 1..{MAX_FRAMES}")
    if h.width * h.height * h.frames > MAX_PIXELS:
        raise BitstreamError(f"check_header: {h.width}x{h.height}x{h.frames} passes {MAX_PIXELS} pixels")
    if not (0 < h.fps.numerator <= 10**6 and 0 < h.fps.denominator <= 10**6):
        raise BitstreamError(f"check_header: frame rate {h.fps} out of range")
    if h.matrix not in MATRICES:
        raise BitstreamError(f"check_header: colour matrix {h.matrix} is not one of {sorted(MATRICES)}")
    if h.color_range not in RANGES:
        raise BitstreamError(f"check_header: colour range {h.color_range} is not one of {sorted(RANGES)}")


def write(stream: Bitstream) -> bytes:
    """Serialise a bitstream."""
    h = stream.header
    check_header(h)
    codec_id = next(k for k, v in NEURAL_CODECS.items() if v == h.codec)
    fixed = HEADER.pack(
        MAGIC,
        VERSION,
        codec_id,
        len(stream.sections),
        h.width,
        h.height,
        h.frames,
        h.fps.numerator,
        h.fps.denominator,
        h.matrix,
        h.color_range,
        0,
    )
    parts = [fixed, struct.pack("<I", zlib.crc32(fixed))]
    for tag, payload in stream.sections.items():
        raw = tag.encode("ascii")
        if len(raw) != 4:
            raise BitstreamError(f"write: section tag {tag!r} is not 4 ASCII characters")
        crc = zlib.crc32(payload, zlib.crc32(raw + struct.pack("<I", len(payload))))
        parts += [SECTION.pack(raw, len(payload), crc), payload]
    data = b"".join(parts)
    if len(data) > MAX_FILE:
        raise BitstreamError(f"write: {len(data)} bytes passes the {MAX_FILE}-byte limit")
    return data


def parse_header(data: bytes) -> tuple[Header, int]:
    """The header and the declared section count (checks magic, version, CRC and limits)."""
    need = HEADER.size + 4
    if len(data) < need:
        raise BitstreamError(f"parse: {len(data)} bytes is shorter than the {need}-byte header")
    if len(data) > MAX_FILE:
        raise BitstreamError(f"parse: {len(data)} bytes passes the {MAX_FILE}-byte limit")
    fields = HEADER.unpack_from(data)
    magic, version, codec_id, count, width, height, frames, num, den, matrix, rng, _ = fields
    if magic != MAGIC:
        raise BitstreamError("parse: not a vinr bitstream (bad magic)")
    if version not in READABLE:
        raise BitstreamError(f"parse: unsupported version {version} (this vinr reads {READABLE})")
    (crc,) = struct.unpack_from("<I", data, HEADER.size)
    if crc != zlib.crc32(data[: HEADER.size]):
        raise BitstreamError("parse: header CRC mismatch")
    if codec_id not in NEURAL_CODECS:
        raise BitstreamError(f"parse: unknown codec id {codec_id}")
    if count > MAX_SECTIONS:
        raise BitstreamError(f"parse: {count} sections passes {MAX_SECTIONS}")
    if not (num and den):
        raise BitstreamError("parse: zero frame rate")
    header = Header(NEURAL_CODECS[codec_id], width, height, frames, Fraction(num, den), matrix, rng)
    check_header(header)
    return header, count


def scan(handle: BinaryIO, size: int) -> tuple[Header, dict[str, tuple[int, int]]]:
    """Verify a bitstream of ``size`` bytes read from ``handle`` in ``CHUNK`` reads (memory stays bounded).

    Returns the header and, per section tag, ``(offset, length)`` of its payload in the file.
    BitstreamError for anything malformed: every length is checked before it is trusted.
    """
    if size > MAX_FILE:
        raise BitstreamError(f"parse: {size} bytes passes the {MAX_FILE}-byte limit")
    header, count = parse_header(handle.read(HEADER.size + 4))
    offset, sections = HEADER.size + 4, {}
    for index in range(count):
        raw_header = handle.read(SECTION.size)
        if len(raw_header) < SECTION.size:
            raise BitstreamError(f"parse: truncated in the header of section {index}")
        raw, length, crc = SECTION.unpack(raw_header)
        offset += SECTION.size
        if length > size - offset:
            raise BitstreamError(f"parse: section {index} claims {length} bytes; {size - offset} remain")
        running, left = zlib.crc32(raw + struct.pack("<I", length)), length
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                raise BitstreamError(f"parse: truncated in section {index}")
            running, left = zlib.crc32(chunk, running), left - len(chunk)
        if running != crc:
            raise BitstreamError(f"parse: section {index} CRC mismatch")
        try:
            tag = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BitstreamError(f"parse: section {index} has a non-ASCII tag") from exc
        if tag in sections:
            raise BitstreamError(f"parse: section {tag!r} appears twice")
        sections[tag] = (offset, length)
        offset += length
    if offset != size:
        raise BitstreamError(f"parse: {size - offset} trailing bytes after the last section")
    return header, sections


def parse(data: bytes) -> Bitstream:
    """Parse and verify a whole bitstream held in memory; BitstreamError for anything malformed."""
    header, index = scan(io.BytesIO(data), len(data))
    return Bitstream(header, {tag: data[offset : offset + length] for tag, (offset, length) in index.items()})
