"""The neural codecs behind one interface: probe, open, decode a frame range, encode, describe.

A bitstream's header names its codec (``container.NEURAL_CODECS``); every caller (the probe that runs
before a decode is queued, the decode and encode jobs, ``vinr info``) asks ``get(name)`` for it and
never compares codec names itself. NRFF (``models/nrff/codec.py``) and D-NeRV (``models/dnerv/codec.py``)
register themselves when their module is imported; ``get`` imports a built-in codec's module on first use,
so naming one loads nothing else.

To add a codec: implement ``NeuralCodec`` in ``models/NAME/codec.py``, decorate the class with
``@register``, give the container an id for it (``container.NEURAL_CODECS``) and add it to ``_BUILTIN``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Protocol, TypeVar

import numpy as np

from models.bitstream import container
from models.bitstream.container import BitstreamError

_BUILTIN = {"nrff": "models.nrff.codec", "dnerv": "models.dnerv.codec"}
"""Built-in codecs by name -> the module that registers each."""
NAMES = tuple(_BUILTIN)
"""The codecs ``vinr encode --codec`` offers (the first is the default)."""
_CODECS: dict[str, NeuralCodec] = {}
Progress = Callable[[dict], None] | None
"""What an encoder reports its fitting to (step, loss, PSNR), if anything."""


@dataclass(frozen=True)
class Video:
    """One video to encode: a name, RGB frames ``(T, H, W, 3)`` uint8, and its rate."""

    name: str
    frames: np.ndarray
    fps: Fraction


@dataclass(frozen=True, kw_only=True)
class EncodeOptions:
    """What ``vinr encode`` asks of any codec; a codec refuses (ValueError) what it cannot honour."""

    bpp: float
    minutes: float | None
    steps: int
    weight_bits: int = 8
    residual_share: float | None = None
    """NRFF's share of the bits for its latent residual (None: by the rate)."""


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


@dataclass(frozen=True, kw_only=True)
class OpenFile:
    """A bitstream file being probed: its handle, header, CRC-verified sections (tag -> (offset, length)),
    its CONF section's bytes, and the video asked for (a name or an index; None: the first)."""

    handle: BinaryIO
    header: container.Header
    sections: dict[str, tuple[int, int]]
    conf: bytes
    video: str | None


@dataclass(frozen=True)
class Probed:
    """What a codec's ``probe`` read: the chosen video, the weight section it needs, and that video's
    keyframe payload with the number of keyframes it must hold (the caller decodes them)."""

    probe: Probe
    weights: str
    keyframes: bytes
    keyframe_count: int


@dataclass
class Source:
    """One decodable video of a bitstream: its size, rate, frame count and a renderer of frame ranges
    (``render(start, stop)`` yields ``(index, (H, W, 3) RGB in [0, 1])``)."""

    width: int
    height: int
    fps: Fraction
    count: int
    render: Callable[[int, int], Iterator[tuple[int, np.ndarray]]]


class NeuralCodec(Protocol):
    """A neural codec: one class per codec, registered with ``@register``."""

    name: str
    many_videos: bool
    """Whether one file holds many videos (a library): ``encode`` then takes every video given."""

    def probe(self, file: OpenFile) -> Probed:
        """Read only what checks the video asked for; BitstreamError, UnknownVideoError."""
        ...

    def check(self, options: EncodeOptions) -> None:
        """ValueError if this codec cannot honour ``options`` (called before any video is read)."""
        ...

    def open(self, data: bytes, video: int) -> Source:
        """Video ``video`` of the bitstream ``data``, ready to render frame ranges."""
        ...

    def encode(self, videos: list[Video], options: EncodeOptions, device: object, progress: Progress) -> bytes:
        """Fit the codec to ``videos`` within ``options``; the bitstream's bytes."""
        ...

    def describe(self, stream: container.Bitstream) -> list[str]:
        """Lines ``vinr info`` prints after the header and sections (a library's videos)."""
        ...


def register(cls: type[C]) -> type[C]:
    """Class decorator: make a codec (its ``name``) available to ``get``."""
    codec = cls()
    _CODECS[codec.name] = codec
    return cls


C = TypeVar("C", bound=NeuralCodec)


def get(name: str) -> NeuralCodec:
    """The codec called ``name``; ValueError if there is none."""
    if name not in _CODECS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _CODECS:
        raise ValueError(f"unknown codec {name!r}; choose one of {', '.join(NAMES)}")
    return _CODECS[name]


def read_at(handle: BinaryIO, offset: int, length: int) -> bytes:
    """Exactly ``length`` bytes of ``handle`` at ``offset``."""
    handle.seek(offset)
    data = handle.read(length)
    if len(data) != length:
        raise BitstreamError("probe: the file changed while it was read")
    return data
