"""The D-NeRV decoder: one video (or a frame range of it) out of a collection, touching only the
keyframes and clips it needs. Parsing is bounds-checked and never unpickles."""

from __future__ import annotations

import bisect
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from models.bitstream import container, keyframes, quant
from models.bitstream.container import BitstreamError
from models.bitstream.library import choose_video
from models.dnerv.base import load_base
from models.dnerv.network import (
    LIMITS,
    DNeRV,
    between_frames,
    keyframe_indices,
    pack_plan,
    pad_frames,
    padded,
    show_keyframes,
)
from models.nrff import residual as latent_residual

MAX_VIDEOS = 10_000
MAX_NAME = 200
ROWS_PER_CHUNK = 64
"""Rows of a frame whose latent residual is synthesised at once (bounds memory on large frames)."""


def check_int(name: str, value, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BitstreamError(f"read_config: {name}={value!r} outside {low}..{high}")
    return value


def read_config(payload: bytes, header: container.Header) -> dict:
    """The CONF section, every field range-checked and the index consistent with the header.

    Format 2 gives each video its own size (the header holds the largest) and may name a base
    decoder; a format-1 CONF (one size, the header's, for every video) gets those sizes filled in.
    Format 3 adds the keyframe spacing ``gop`` (at most the network's clip); earlier formats get
    ``gop`` = clip filled in. Format 4 has format 3's fields; its keyframes are shown as decoded
    (``Library.frames``). Format 5 may add ``residual`` (a latent residual over the frames between
    keyframes, ``models/nrff/residual.py``: its ``levels``, ``width`` and ``coding``), stored in RESD."""
    if len(payload) > 256 * MAX_VIDEOS:
        raise BitstreamError("read_config: CONF section is too large")
    try:
        config = json.loads(payload.decode("utf-8"))
        preset, videos = config["preset"], config["videos"]
        channels, content = preset["channels"], preset["content"]
        version = config.get("format", 1)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BitstreamError(f"read_config: CONF is malformed: {exc}") from exc
    if version not in (1, 2, 3, 4, 5):
        raise BitstreamError(f"read_config: unknown CONF format {version!r}")
    if not (isinstance(channels, list) and isinstance(content, list) and len(channels) == len(content)):
        raise BitstreamError("read_config: channels and content must be lists of equal length")
    stages = check_int("stages", len(channels) - 1, *LIMITS["stages"])
    for width in channels + content:
        check_int("width", width, *LIMITS["width"])
    clip = check_int("clip", preset.get("clip"), *LIMITS["clip"])
    if version < 3:
        config["gop"] = clip
    check_int("gop", config.get("gop"), 1, clip)
    check_int("frequencies", preset.get("frequencies"), *LIMITS["frequencies"])
    if version == 1:
        check_v1_padding(config.get("padded"), header, 2**stages)
    if not isinstance(videos, list) or not 1 <= len(videos) <= MAX_VIDEOS:
        raise BitstreamError("read_config: the video index is empty or too long")
    total = 0
    for entry in videos:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or len(entry["name"]) > MAX_NAME:
            raise BitstreamError("read_config: a video entry is malformed")
        total += check_int("frames", entry.get("frames"), 1, container.MAX_FRAMES)
        fps = entry.get("fps")
        if not (isinstance(fps, list) and len(fps) == 2 and all(isinstance(x, int) and 0 < x <= 10**6 for x in fps)):
            raise BitstreamError("read_config: a video's frame rate is malformed")
        if version == 1:
            entry["width"], entry["height"] = header.width, header.height
        check_int("width", entry.get("width"), 1, header.width)
        check_int("height", entry.get("height"), 1, header.height)
    if total != header.frames:
        raise BitstreamError(f"read_config: the index holds {total} frames, the header {header.frames}")
    if max(v["width"] for v in videos) != header.width or max(v["height"] for v in videos) != header.height:
        raise BitstreamError("read_config: the header's size is not the largest video's")
    if "residual" in config:
        if version < 5:
            raise BitstreamError(f"read_config: CONF format {version} has no residual")
        latent_residual.check_config(config["residual"])
    base = config.get("base")
    if base is not None and not (
        isinstance(base, dict) and isinstance(base.get("name"), str) and isinstance(base.get("sha256"), str)
    ):
        raise BitstreamError("read_config: the base decoder entry is malformed")
    return config


def weights_section(config: dict) -> str:
    """Where a library's weights are: ``DLTA`` (difference from its base decoder) or ``WGTS`` (whole)."""
    return "DLTA" if config.get("base") else "WGTS"


def check_v1_padding(padded, header: container.Header, unit: int) -> None:
    """A format-1 CONF's padded size must be the header's rounded up to ``unit``."""
    if not (isinstance(padded, list) and len(padded) == 2 and all(isinstance(x, int) for x in padded)):
        raise BitstreamError("read_config: padded size is malformed")
    pad_h, pad_w = padded
    if not (
        header.height <= pad_h < header.height + unit
        and header.width <= pad_w < header.width + unit
        and pad_h % unit == 0
        and pad_w % unit == 0
    ):
        raise BitstreamError("read_config: padded size does not fit the header")


def split_keyframes(payload: bytes, videos: int) -> list[bytes]:
    """Per-video keyframe payloads from the KEYF index (offsets and lengths checked)."""
    if len(payload) < 4:
        raise BitstreamError("split_keyframes: truncated")
    (count,) = struct.unpack_from("<I", payload)
    if count != videos or len(payload) < 4 + 8 * count:
        raise BitstreamError(f"split_keyframes: {count} entries for {videos} videos")
    parts = []
    for i in range(count):
        offset, length = struct.unpack_from("<II", payload, 4 + 8 * i)
        if offset < 4 + 8 * count or offset + length > len(payload):
            raise BitstreamError(f"split_keyframes: entry {i} points outside the section")
        parts.append(payload[offset : offset + length])
    return parts


@dataclass
class Library:
    """A parsed ``.dnerv`` collection; ``decoded_clips`` records what was decoded (for tests).
    ``residual``: the latent residual of every frame between keyframes (CONF format 5), frame ``k`` of
    it the ``k``-th such frame of the library, video by video; it works at ``padded_size``, to which
    each prediction is edge-padded."""

    header: container.Header
    config: dict
    model: DNeRV
    keyframe_payloads: list[bytes]
    residual: latent_residual.Residual | None = None
    residual_first: list[int] = field(default_factory=list)
    """Per video, where its first frame between keyframes is in the residual."""
    decoded_clips: list[tuple[int, int]] = field(default_factory=list)
    decoded_keyframes: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def videos(self) -> list[dict]:
        return self.config["videos"]

    @property
    def padded_size(self) -> tuple[int, int]:
        """The library's (height, width) rounded up to a multiple of 2^scales: the residual's frame size."""
        return padded(self.header.height, self.header.width, len(self.config["preset"]["channels"]) - 1)

    def size(self, index: int) -> tuple[int, int]:
        """Video ``index``'s (width, height)."""
        return self.videos[index]["width"], self.videos[index]["height"]

    def find(self, name_or_index: str | int | None) -> int:
        """A video's index from its name or number (the first when None); UnknownVideoError if none."""
        return choose_video(self.videos, None if name_or_index is None else str(name_or_index))

    def keyframes(self, index: int) -> torch.Tensor:
        """Video ``index``'s keyframes, decoded once, as padded ``(K, 3, H, W)`` floats (BitstreamError if bad)."""
        if index not in self.decoded_keyframes:
            count, preset = self.videos[index]["frames"], self.config["preset"]
            w, h = self.size(index)
            keys = np.stack(
                keyframes.decode(self.keyframe_payloads[index], w, h, len(keyframe_indices(count, self.config["gop"])))
            )
            self.decoded_keyframes[index] = pad_frames(
                torch.from_numpy(keys).permute(0, 3, 1, 2).float() / 255, *padded(h, w, len(preset["channels"]) - 1)
            )
        return self.decoded_keyframes[index]

    def fps(self, index: int) -> Fraction:
        return Fraction(*self.videos[index]["fps"])

    @torch.no_grad()
    def predictions(
        self, index: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, bool, torch.Tensor]]:
        """``(frame, between keyframes, padded (3, H, W) float)`` for frames ``start..stop`` of video
        ``index``, before any residual and unclamped; only their clips run. From CONF format 4 a
        keyframe's frame is the keyframe as decoded; before, the network's output."""
        count, clip, gop = self.videos[index]["frames"], self.config["preset"]["clip"], self.config["gop"]
        stop = count if stop is None else stop
        keys = self.keyframes(index)
        shown = self.config.get("format", 1) >= 4
        for pack in pack_plan(count, gop, clip):
            if pack.stop <= start or pack.start >= stop:
                continue
            self.decoded_clips.append((index, pack.start))
            pack_keys = keys[pack.key_lo : pack.key_hi]
            if not shown:
                out = self.model(pack_keys, *pack.tensors())
            elif any(pack.between[: pack.stop - pack.start]):
                out = show_keyframes(self.model(pack_keys, *pack.tensors()), pack_keys, pack)
            else:
                out = show_keyframes(None, pack_keys, pack)
            for j in range(max(pack.start, start), min(pack.stop, stop)):
                yield j, pack.between[j - pack.start], out[j - pack.start]

    @torch.no_grad()
    def frames(self, index: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Frames ``start..stop`` of video ``index`` as RGB float32 ``(H, W, 3)`` in [0, 1]: the
        predictions, plus the latent residual between keyframes where the library has one."""
        w, h = self.size(index)
        keys = keyframe_indices(self.videos[index]["frames"], self.config["gop"]) if self.residual else []
        for j, between, frame in self.predictions(index, start, stop):
            if self.residual is not None and between:
                position = self.residual_first[index] + j - bisect.bisect_right(keys, j)  # keyframes before j
                grown = pad_frames(frame[None], *self.padded_size)
                frame = self.residual.add(position, grown, ROWS_PER_CHUNK)[0]
            yield j, frame[:, :h, :w].clamp(0, 1).permute(1, 2, 0).numpy()


def open_library(data: bytes) -> Library:
    """Parse and check a ``.dnerv`` file; BitstreamError for anything malformed."""
    stream = container.parse(data)
    if stream.header.codec != "dnerv":
        raise BitstreamError(f"open_library: a {stream.header.codec} bitstream, not dnerv")
    missing = {"CONF", "KEYF"} - set(stream.sections)
    if missing:
        raise BitstreamError(f"open_library: missing sections {sorted(missing)}")
    config = read_config(stream.sections["CONF"], stream.header)
    weights = weights_section(config)
    if weights not in stream.sections:
        raise BitstreamError(f"open_library: missing section {weights}")
    preset = config["preset"]
    if weights == "DLTA":
        model = load_base(config["base"]["name"], config["base"]["sha256"])
        if model.spec["args"] != preset:
            raise BitstreamError("open_library: the base decoder's configuration is not the library's")
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        delta = quant.unpack_delta(stream.sections["DLTA"], shapes)
        state = {k: v + torch.from_numpy(delta[k]) for k, v in model.state_dict().items()}
    else:
        model = DNeRV(preset["channels"], preset["content"], preset["clip"], preset["frequencies"])
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        state = {k: torch.from_numpy(v) for k, v in quant.unpack_state(stream.sections["WGTS"], shapes).items()}
    model.load_state_dict(state)
    payloads = split_keyframes(stream.sections["KEYF"], len(config["videos"]))
    library = Library(stream.header, config, model.eval(), payloads)
    if "residual" in config:
        if "RESD" not in stream.sections:
            raise BitstreamError("open_library: CONF declares a residual and there is no RESD section")
        counts = [len(between_frames(v["frames"], config["gop"])) for v in config["videos"]]
        library.residual = latent_residual.unpack(
            stream.sections["RESD"], config["residual"], sum(counts), *library.padded_size
        )
        library.residual_first = [0, *np.cumsum(counts)[:-1].tolist()]
    return library
