"""The vinr neural-video container: a versioned header and CRC-checked sections.

Byte layout (all integers little-endian)::

    offset size  field
    0      4     magic  b"VINR"
    4      1     version (1)
    5      1     codec id (1 = NRFF, 2 = D-NeRV)
    6      2     section count n (<= MAX_SECTIONS)
    8      2     width  (1 .. MAX_SIDE)
    10     2     height (1 .. MAX_SIDE)
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

The codec decides what its sections hold (see ``models/nrff/codec.py``). ``parse`` checks every
bound before it allocates and raises ``BitstreamError`` for anything malformed; nothing is ever
unpickled, and the worst-case decoded size is bounded by the header limits below.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

MAGIC = b"VINR"
VERSION = 1
CODECS = {1: "nrff", 2: "dnerv"}
"""Codec id -> name."""
MAX_SIDE = 8192
"""Largest width or height accepted, pixels."""
MAX_FRAMES = 100_000
"""Largest frame count accepted."""
MAX_PIXELS = 2 * 10**9
"""Largest width x height x frames accepted (bounds the decoded size)."""
MAX_SECTIONS = 64
MAX_FILE = 1 << 30
"""Largest file accepted, bytes."""
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


def check_header(h: Header) -> None:
    """Refuse sizes beyond the limits (for writing and reading alike)."""
    if h.codec not in CODECS.values():
        raise BitstreamError(f"check_header: unknown codec {h.codec!r}")
    if not (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE):
        raise BitstreamError(f"check_header: size {h.width}x{h.height} outside 1..{MAX_SIDE}")
    if not 1 <= h.frames <= MAX_FRAMES:
        raise BitstreamError(f"check_header: {h.frames} frames outside 1..{MAX_FRAMES}")
    if h.width * h.height * h.frames > MAX_PIXELS:
        raise BitstreamError(f"check_header: {h.width}x{h.height}x{h.frames} passes {MAX_PIXELS} pixels")
    if not (0 < h.fps.numerator <= 10**6 and 0 < h.fps.denominator <= 10**6):
        raise BitstreamError(f"check_header: frame rate {h.fps} out of range")


def write(stream: Bitstream) -> bytes:
    """Serialise a bitstream."""
    h = stream.header
    check_header(h)
    codec_id = next(k for k, v in CODECS.items() if v == h.codec)
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
    if version != VERSION:
        raise BitstreamError(f"parse: unsupported version {version}")
    (crc,) = struct.unpack_from("<I", data, HEADER.size)
    if crc != zlib.crc32(data[: HEADER.size]):
        raise BitstreamError("parse: header CRC mismatch")
    if codec_id not in CODECS:
        raise BitstreamError(f"parse: unknown codec id {codec_id}")
    if count > MAX_SECTIONS:
        raise BitstreamError(f"parse: {count} sections passes {MAX_SECTIONS}")
    if not (num and den):
        raise BitstreamError("parse: zero frame rate")
    header = Header(CODECS[codec_id], width, height, frames, Fraction(num, den), matrix, rng)
    check_header(header)
    return header, count


def parse(data: bytes) -> Bitstream:
    """Parse and verify a whole bitstream; BitstreamError for anything malformed."""
    header, count = parse_header(data)
    offset, sections = HEADER.size + 4, {}
    for index in range(count):
        if offset + SECTION.size > len(data):
            raise BitstreamError(f"parse: truncated in the header of section {index}")
        raw, length, crc = SECTION.unpack_from(data, offset)
        offset += SECTION.size
        if length > len(data) - offset:
            raise BitstreamError(f"parse: section {index} claims {length} bytes; {len(data) - offset} remain")
        payload = data[offset : offset + length]
        offset += length
        if zlib.crc32(payload, zlib.crc32(raw + struct.pack("<I", length))) != crc:
            raise BitstreamError(f"parse: section {index} CRC mismatch")
        try:
            tag = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BitstreamError(f"parse: section {index} has a non-ASCII tag") from exc
        if tag in sections:
            raise BitstreamError(f"parse: section {tag!r} appears twice")
        sections[tag] = payload
    if offset != len(data):
        raise BitstreamError(f"parse: {len(data) - offset} trailing bytes after the last section")
    return Bitstream(header, sections)
