"""The NRFF decoder: parse a ``.nrff`` bitstream (bounds-checked, never unpickled) and render frames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models.bitstream import container, keyframes, quant
from models.bitstream.container import BitstreamError, check_limits
from models.nrff import residual
from models.nrff.network import LIMITS, NRFF, keyframe_indices, predict_frame

ROWS_PER_CHUNK = 64
"""Output rows rendered at once (bounds decoder memory on large frames)."""


@dataclass
class Decoder:
    """A parsed NRFF bitstream, ready to render any frame."""

    header: container.Header
    config: dict
    model: NRFF
    keys: torch.Tensor  # (K, 3, H, W) in [0, 1]
    residual: residual.Residual | None = None

    @torch.no_grad()
    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB float32 ``(H, W, 3)`` in [0, 1]."""
        h = self.header
        prediction = predict_frame(self.model, self.keys, index, h.frames, self.config["gop"], ROWS_PER_CHUNK)[None]
        if self.residual is not None:
            prediction = self.residual.add(index, prediction, ROWS_PER_CHUNK)
        return prediction[0].permute(1, 2, 0).clamp(0, 1).contiguous().numpy()

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        stop = self.header.frames if stop is None else stop
        for index in range(start, stop):
            yield index, self.frame(index)


def read_config(payload: bytes) -> dict:
    """The CONF section, every field checked against ``LIMITS``."""
    if len(payload) > 4096:
        raise BitstreamError("read_config: CONF section is too large")
    try:
        config = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BitstreamError(f"read_config: CONF is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise BitstreamError("read_config: CONF is not an object")
    check_limits(config, LIMITS, "")
    if "residual" in config:
        residual.check_config(config["residual"])
    return config


def open_bitstream(data: bytes) -> Decoder:
    """Parse and check everything; BitstreamError for anything malformed."""
    stream = container.parse(data)
    header = stream.header
    if header.codec != "nrff":
        raise BitstreamError(f"open_bitstream: a {header.codec} bitstream, not nrff")
    missing = {"CONF", "KEYF", "WGTS"} - set(stream.sections)
    if missing:
        raise BitstreamError(f"open_bitstream: missing sections {sorted(missing)}")
    config = read_config(stream.sections["CONF"])
    if "residual" in config and "RESD" not in stream.sections:
        raise BitstreamError("open_bitstream: CONF declares a residual and there is no RESD section")
    network = NRFF(config["width"], config["depth"], config["frequencies"]).eval()
    model = quant.load_module(network, stream.sections["WGTS"])
    count = len(keyframe_indices(header.frames, config["gop"]))
    keys = keyframes.decode(stream.sections["KEYF"], header.width, header.height, max_frames=count)
    if len(keys) != count:
        raise BitstreamError(f"open_bitstream: {len(keys)} keyframes for {count} GOPs")
    tensor = torch.from_numpy(np.stack(keys)).permute(0, 3, 1, 2).float() / 255
    resd = None
    if "residual" in config:
        resd = residual.unpack(stream.sections["RESD"], config["residual"], header.frames, header.height, header.width)
    return Decoder(header, config, model, tensor, resd)
