"""Inference with a VideoINR model over whole frames: per-frame encoding once, pairs, tiles, chunks.

Large frames are cut into low-res tiles with a halo of context around each: every tile is encoded
(and paired) on its own, and answers only the output pixels whose centre falls in its core, so the
seams vanish once the halo covers the network's receptive field and the motion. Memory is bounded by
the tile size and the query chunk, not the frame size (what a GPU with 8 GB and a 4K input needs).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.videoinr.network import VideoINR


@dataclass(frozen=True)
class UpsampleOptions:
    """How inference is cut up; none of it changes the result beyond a small tiling tolerance."""

    tile: int = 512
    """Low-res tile side in pixels; frames at most this large (plus a halo) are not tiled; 0: never tile."""
    halo: int = 64
    """Low-res pixels of context read around each tile: the 4-level flow pyramid of ``videoinr-s`` (v3 and
    v4) reaches about 60 pixels. Measured on a moving texture, largest difference to the whole frame:
    v4 2/255 at 48, 0.12/255 at 56, none at 64; v3 0.32/255 at 48; v2 needed 32."""
    chunk: int = 0
    """Output points x times per MLP batch (bounds the query memory); 0: ``CPU_CHUNK`` on a CPU, ``GPU_CHUNK``
    elsewhere."""
    align: int = 8
    """Crops start at multiples of this many low-res pixels: the flow pyramid's coarsest stride (8 for
    4 levels), so its pooling sees the same grid in a tile as in the whole frame."""


CPU_CHUNK = 32768
"""Query points x times per batch on a CPU: measured on 2 cores (docs/benchmarks.md), 16K-32K run v3's queries
25-30% faster than 64K, whose 32-channel activations (8 MB each) no longer stay in the cache between layers."""
GPU_CHUNK = 65536
"""Query points x times per batch on a GPU, where larger batches keep the device busy."""


@dataclass
class Tile:
    """A low-res tile: its core rows/columns and the crop (core + halo) that is encoded."""

    core: tuple[int, int, int, int]  # y0, y1, x0, x1
    crop: tuple[int, int, int, int]


@dataclass
class FrameFeatures:
    """A frame's low-res crops and per-tile features (kept while the frame is in a pair)."""

    size: tuple[int, int]  # low-res (h, w)
    crops: list[torch.Tensor]
    features: list[torch.Tensor]


@dataclass
class StageTimes:
    """Seconds spent per stage (for benchmarks and progress reports)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, started: float, device: torch.device) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with self.lock:  # pairs may render in several threads (worker.pipeline.Renderer)
            self.seconds[stage] += time.perf_counter() - started


def split(length: int, tile: int) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` into near-equal parts of at most ``tile``."""
    parts = 1 if tile <= 0 else max(1, math.ceil(length / tile))
    edges = [round(i * length / parts) for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def covered(start: int, stop: int, low: int, high: int) -> tuple[int, int]:
    """Output indices whose centres, mapped into low-res units, fall in ``[start, stop)``."""
    ratio = high / low
    return math.ceil(start * ratio - 0.5), math.ceil(stop * ratio - 0.5)


class Upsampler:
    """Render output frames at any size and time between two input frames."""

    def __init__(
        self,
        model: VideoINR | Any,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        options: UpsampleOptions | None = None,
    ):
        # A torch module is moved and put in eval mode; another backend's network (worker.runtime) is used as is.
        # float16/bfloat16 run a torch module under autocast with float32 weights: convolutions and MLPs in
        # half precision, coordinates and sampling in float32 (a float16 coordinate is off by up to half a
        # pixel past 1024, and a flat pixel index past 2048).
        # On a CPU only the convolutional stages (frame encoder, pair stage) take half precision: the 32-48 wide
        # query MLPs ran slower in bfloat16 than in float32 there (docs/benchmarks.md).
        self.device = torch.device(device)
        self.autocast = self.query_autocast = None
        if isinstance(model, torch.nn.Module):
            if dtype in (torch.float16, torch.bfloat16):
                self.autocast, dtype = dtype, torch.float32
                self.query_autocast = self.autocast if self.device.type != "cpu" else None
            model = model.to(device=self.device, dtype=dtype).eval()
            if self.device.type == "cuda" and dtype == torch.float32:
                # float32 means IEEE float32: cuDNN convolutions default to TF32 (a 10-bit mantissa) on Ampere
                # and later, which moved a fine-tuned VideoINR's output by 3.8/1000 from the CPU's (0.003/1000
                # without it; docs/quality.md). float16/bfloat16 are the fast options. Process-wide, as the flag is.
                torch.backends.cudnn.allow_tf32 = False
        self.model, self.dtype = model, dtype
        self.options = options or UpsampleOptions()
        self.chunk = self.options.chunk or (CPU_CHUNK if self.device.type == "cpu" else GPU_CHUNK)
        self.times = StageTimes()
        self._tiles: dict[tuple[int, int], list[Tile]] = {}

    def precision(self, queries: bool = False):
        """The autocast context of a half-precision torch model's convolutional stages or ``queries`` (else
        nothing)."""
        dtype = self.query_autocast if queries else self.autocast
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype)

    def start(self, position: int) -> int:
        """A crop's first row or column: ``position`` moved down to a multiple of ``align`` (at least 0)."""
        return max(0, position // self.options.align * self.options.align)

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiling of an input size (computed once per size)."""
        if (height, width) not in self._tiles:
            tile, halo = self.options.tile, self.options.halo
            whole = tile <= 0 or (height <= tile + 2 * halo and width <= tile + 2 * halo)
            rows = [(0, height)] if whole else split(height, tile)
            cols = [(0, width)] if whole else split(width, tile)
            self._tiles[height, width] = [
                Tile(
                    (y0, y1, x0, x1),
                    (self.start(y0 - halo), min(height, y1 + halo), self.start(x0 - halo), min(width, x1 + halo)),
                )
                for y0, y1 in rows
                for x0, x1 in cols
            ]
        return self._tiles[height, width]

    @torch.no_grad()
    def features(self, image: np.ndarray) -> FrameFeatures:
        """Encode an RGB frame ``(h, w, 3)`` in [0, 1], tile by tile."""
        started = time.perf_counter()
        crops, feats = [], []
        for tile in self.tiles(*image.shape[:2]):  # only one tile's pixels at a time go to the device
            y0, y1, x0, x1 = tile.crop
            pixels = np.ascontiguousarray(image[y0:y1, x0:x1])
            crop = torch.from_numpy(pixels).to(self.device, self.dtype).permute(2, 0, 1)[None]
            crops.append(crop)
            with self.precision():
                feats.append(self.model.encode_frame(crop))
        self.times.add("features", started, self.device)
        return FrameFeatures(image.shape[:2], crops, feats)

    @torch.no_grad()
    def render(
        self, first: FrameFeatures, second: FrameFeatures, times: list[float], height: int, width: int
    ) -> list[np.ndarray]:
        """Output frames ``(height, width, 3)`` float32 at each time in ``times`` (0 = first, 1 = second)."""
        low_h, low_w = first.size
        tiles = self.tiles(low_h, low_w)
        outputs = [torch.empty(height, width, 3, dtype=torch.float32) for _ in times]
        for index, tile in enumerate(tiles):
            started = time.perf_counter()
            with self.precision():
                state = self.model.encode_pair(
                    first.crops[index], second.crops[index], first.features[index], second.features[index]
                )
            if self.autocast is not None and self.query_autocast is None:
                state = state.float()
            self.times.add("pair", started, self.device)
            started = time.perf_counter()
            y0, y1, x0, x1 = tile.core
            rows, cols = covered(y0, y1, low_h, height), covered(x0, x1, low_w, width)
            if rows[1] <= rows[0] or cols[1] <= cols[0]:
                continue
            ys = (torch.arange(*rows, device=self.device, dtype=self.dtype) + 0.5) * (low_h / height) - tile.crop[0]
            xs = (torch.arange(*cols, device=self.device, dtype=self.dtype) + 0.5) * (low_w / width) - tile.crop[2]
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1)
            cell = (low_w / width, low_h / height)
            with self.precision(queries=True):
                rgb = self.model.query_points(state, points, list(times), cell, self.chunk)[0]
            for out, frame in zip(outputs, rgb.unbind(1)):
                out[rows[0] : rows[1], cols[0] : cols[1]] = (
                    frame.reshape(3, rows[1] - rows[0], cols[1] - cols[0]).permute(1, 2, 0).float().cpu()
                )
            self.times.add("queries", started, self.device)
        return [out.clamp_(0, 1).numpy() for out in outputs]
