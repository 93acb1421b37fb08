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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models import ops
from models.videoinr.network import VideoINR


@dataclass(frozen=True)
class UpsampleOptions:
    """How inference is cut up; none of it changes the result beyond a small tiling tolerance."""

    tile: int | None = None
    """Low-res tile side in pixels; frames at most this large (plus a halo) are not tiled; 0: never tile;
    None: ``CPU_TILE`` on the CPU path, on the device path as many pixels as ``memory`` holds."""
    halo: int = 64
    """Low-res pixels of context read around each tile: the 4-level flow pyramid of ``videoinr-s`` (v3 and
    v4) reaches about 60 pixels. Measured on a moving texture, largest difference to the whole frame:
    v4 2/255 at 48, 0.12/255 at 56, none at 64; v3 0.32/255 at 48; v2 needed 32."""
    chunk: int = 0
    """Output points x times per MLP batch (bounds the query memory); 0: ``CPU_CHUNK`` on the CPU path, on
    the device path as many as ``memory`` holds."""
    align: int = 8
    """Crops start at multiples of this many low-res pixels: the flow pyramid's coarsest stride (8 for
    4 levels), so its pooling sees the same grid in a tile as in the whole frame."""
    path: str = "auto"
    """``cpu``: the CPU inference kernels, cache-sized chunks and tiles; ``device``: the portable ops in few
    large operations (whole frames and all of a pair's times in one chunk where ``memory`` allows), frames
    converted to the encoder's format before they leave the device; ``auto``: ``device`` off the CPU."""
    memory: int = 0
    """Bytes of device memory the device path plans for (one query chunk, or one tile's encoding, takes
    ``MEMORY_SHARE`` of it); 0: the device's free memory when the upsampler is made
    (``torch.cuda.mem_get_info``), or ``DEFAULT_DEVICE_MEMORY`` where the device cannot say."""
    timing: bool = False
    """Synchronise the device after every stage so that ``Upsampler.times`` holds device time (benchmark
    breakdowns); otherwise a GPU's stage times are the host's time to queue the work, and nothing waits."""


CPU_CHUNK = 32768
"""Query points x times per batch on a CPU: measured on 2 cores (docs/benchmarks.md), 16K-32K run v3's queries
25-30% faster than 64K, whose 32-channel activations (8 MB each) no longer stay in the cache between layers."""
CPU_TILE = 512
"""Low-res tile side on the CPU path (the CLI's and the service's default there)."""
MEMORY_SHARE = 0.5
"""Share of the device memory planned for (``UpsampleOptions.memory``) one chunk of queries or one tile's
encoding may take: the pair state, the frames on their way out and the allocator's slack take the rest."""
DEFAULT_DEVICE_MEMORY = 8 << 30
"""Bytes the device path plans for where the device cannot report its free memory (not CUDA, ``memory`` 0)."""
MAX_DEVICE_CHUNK = 1 << 25
"""Most query points x times in one batch (32M: 1080p at 16 times per pair); past it int32 offsets of
some kernels would overflow on the widest models."""
QUERY_FLOATS_MARGIN = 1.5
"""Allocator slack over ``query_bytes``'s count of live floats (measured on the CPU: videoinr-s48 peaked at
about 760 bytes per point x time, 1080p at 4 times in one chunk, against 1104 planned)."""


def query_bytes(model) -> int:
    """Bytes one output point x time takes at the peak of a query batch on the device path: the widest
    activations alive together (code, hidden layers, flows, samples) in float32, with ``QUERY_FLOATS_MARGIN``."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden", 256)
    temporal = getattr(config, "temporal_hidden", 0) or hidden // 2
    return int(4 * (2 * hidden + 2 * temporal + 24) * QUERY_FLOATS_MARGIN)


def encoder_bytes(model) -> int:
    """Bytes one low-res pixel takes at the peak of a frame's encoding and its pair stage: the pyramid's
    features of both frames, warps, concatenations and the widest convolution's activations, in float32."""
    config = getattr(model, "config", None)
    channels = getattr(config, "channels", 64)
    motion = getattr(config, "motion_channels", 128)
    return int(4 * (24 * channels + 4 * motion) * QUERY_FLOATS_MARGIN)


@dataclass
class Transfers:
    """What the device path hands the host: bytes copied off the device and the waits it asks for (what
    ``bench.dispatch`` reports per output frame)."""

    bytes: int = 0
    synchronisations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, nbytes: int = 0, synchronisations: int = 0) -> None:
        with self.lock:
            self.bytes += nbytes
            self.synchronisations += synchronisations


@dataclass(frozen=True)
class FrameFormat:
    """What an encoder takes: planar limited-range 4:2:0 YUV (``yuv420p`` or ``yuv420p10le``) in FFmpeg colour
    matrix ``matrix`` (1 BT.709, 6 BT.601)."""

    pix_fmt: str
    matrix: int

    @property
    def bits(self) -> int:
        return 10 if self.pix_fmt == "yuv420p10le" else 8


DEVICE_FORMATS = ("yuv420p", "yuv420p10le")
"""Pixel formats the device path converts to before a frame leaves the device."""


@dataclass
class HostFrame:
    """A frame on its way to the host: planes in ``format`` (or float32 RGB ``(H, W, 3)`` without one), in
    pinned memory filled by an asynchronous copy on a GPU. ``pixels()`` waits for that copy (only then)."""

    data: torch.Tensor
    format: FrameFormat | None
    copied: Any = None  # a torch.cuda.Event recorded after the copy, or None when the data is already here

    def pixels(self) -> np.ndarray:
        """The frame's array: YUV planes ``(3 H / 2, W)`` (uint8, or uint16 for 10 bits), else RGB float32."""
        if self.copied is not None:
            self.copied.synchronize()
        array = self.data.numpy()
        return array.view(np.uint16) if array.dtype == np.int16 else array


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

    def add(self, stage: str, started: float, device: torch.device, synchronize: bool = False) -> None:
        """Count the seconds since ``started`` for ``stage``; waits for ``device`` first if ``synchronize``."""
        if synchronize and device.type == "cuda":
            torch.cuda.synchronize(device)
        with self.lock:  # pairs may render in several threads (worker.render.Renderer)
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
        self.model: Any = model  # VideoINR, or another backend's network with its three stages
        self.dtype = dtype
        self.options = options = options or UpsampleOptions()
        if options.path not in ("auto", "cpu", "device"):
            raise ValueError(f"Upsampler: path must be auto, cpu or device, not {options.path!r}")
        self.on_device = options.path == "device" or (options.path == "auto" and self.device.type != "cpu")
        budget = int((options.memory or self.free_memory()) * MEMORY_SHARE) if self.on_device else 0
        self.chunk = options.chunk or (
            min(MAX_DEVICE_CHUNK, max(CPU_CHUNK, budget // query_bytes(model))) if self.on_device else CPU_CHUNK
        )
        self.tile_pixels = budget // encoder_bytes(model)
        self.times = StageTimes()
        self.transfers = Transfers()
        self._tiles: dict[tuple[int, int], list[Tile]] = {}
        self._copies: torch.cuda.Stream | None = (
            None  # the side stream that copies frames to the host on a GPU (made on first use)
        )

    def free_memory(self) -> int:
        """The device's free bytes now (CUDA), else ``DEFAULT_DEVICE_MEMORY``."""
        if self.device.type == "cuda":
            return torch.cuda.mem_get_info(self.device)[0]
        return DEFAULT_DEVICE_MEMORY

    def precision(self, queries: bool = False):
        """The autocast context of a half-precision torch model's convolutional stages or ``queries`` (else
        nothing)."""
        dtype = self.query_autocast if queries else self.autocast
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype)

    def kernels(self) -> contextlib.AbstractContextManager:
        """The ops this upsampler's path takes: on the device path the portable ones, also on a CPU."""
        return ops.portable_ops() if self.on_device else contextlib.nullcontext()

    def start(self, position: int) -> int:
        """A crop's first row or column: ``position`` moved down to a multiple of ``align`` (at least 0)."""
        return max(0, position // self.options.align * self.options.align)

    def tile_side(self, height: int, width: int) -> int:
        """The tile side for a frame: the option, else ``CPU_TILE`` on the CPU path; on the device path the
        whole frame when its crop fits ``memory``, else the square that does."""
        if self.options.tile is not None:
            return self.options.tile
        if not self.on_device:
            return CPU_TILE
        if height * width <= self.tile_pixels:
            return 0
        return max(self.options.align, math.isqrt(self.tile_pixels) - 2 * self.options.halo)

    def tiles(self, height: int, width: int) -> list[Tile]:
        """The tiling of an input size (computed once per size)."""
        if (height, width) not in self._tiles:
            tile, halo = self.tile_side(height, width), self.options.halo
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
        with self.kernels():
            for tile in self.tiles(*image.shape[:2]):  # only one tile's pixels at a time go to the device
                y0, y1, x0, x1 = tile.crop
                pixels = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1]))
                if self.device.type == "cuda":  # pinned, so that the copy does not wait on the device
                    pixels = pixels.pin_memory()
                crop = pixels.to(self.device, self.dtype, non_blocking=True).permute(2, 0, 1)[None]
                crops.append(crop)
                with self.precision():
                    feats.append(self.model.encode_frame(crop))
        self.times.add("features", started, self.device, self.options.timing)
        return FrameFeatures(image.shape[:2], crops, feats)

    @torch.no_grad()
    def render(
        self, first: FrameFeatures, second: FrameFeatures, times: list[float], height: int, width: int
    ) -> list[np.ndarray]:
        """Output frames ``(height, width, 3)`` float32 at each time in ``times`` (0 = first, 1 = second)."""
        return [frame.pixels() for frame in self.render_frames(first, second, times, height, width)]

    @torch.no_grad()
    def render_frames(
        self,
        first: FrameFeatures,
        second: FrameFeatures,
        times: list[float],
        height: int,
        width: int,
        into: FrameFormat | None = None,
    ) -> list[HostFrame]:
        """``render``'s frames as ``HostFrame``s, which the host waits for only when it reads them.

        On the device path each is converted to ``into`` (a 4:2:0 YUV format) before it leaves the device
        when one is given. The CPU path ignores ``into``: the encoder's own conversion is faster there.
        """
        with self.kernels():
            if self.on_device:
                frames = self.render_tensor(first, second, times, height, width)
                return [self.to_host(frame, into) for frame in frames.unbind(1)]
            arrays = self.render_arrays(first, second, times, height, width)
        return [HostFrame(torch.from_numpy(array), None) for array in arrays]

    def pair_states(self, first: FrameFeatures, second: FrameFeatures, height: int, width: int) -> Iterator[tuple]:
        """Each tile's pair state with the output rows and columns it answers and its query points."""
        low_h, low_w = first.size
        for index, tile in enumerate(self.tiles(low_h, low_w)):
            started = time.perf_counter()
            with self.precision():
                state = self.model.encode_pair(
                    first.crops[index], second.crops[index], first.features[index], second.features[index]
                )
            if self.autocast is not None and self.query_autocast is None:
                state = state.float()
            self.times.add("pair", started, self.device, self.options.timing)
            y0, y1, x0, x1 = tile.core
            rows, cols = covered(y0, y1, low_h, height), covered(x0, x1, low_w, width)
            if rows[1] <= rows[0] or cols[1] <= cols[0]:
                continue
            ys = (torch.arange(*rows, device=self.device, dtype=self.dtype) + 0.5) * (low_h / height) - tile.crop[0]
            xs = (torch.arange(*cols, device=self.device, dtype=self.dtype) + 0.5) * (low_w / width) - tile.crop[2]
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            yield state, rows, cols, torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1)

    def query(self, state, points: torch.Tensor, times: list[float], cell: tuple[float, float]) -> torch.Tensor:
        """RGB ``(3, T, N)`` of one tile's points."""
        with self.precision(queries=True):
            return self.model.query_points(state, points, list(times), cell, self.chunk)[0]

    def render_arrays(
        self, first: FrameFeatures, second: FrameFeatures, times: list[float], height: int, width: int
    ) -> list[np.ndarray]:
        """The CPU path: each tile's queries written into float32 frames on the host."""
        low_h, low_w = first.size
        cell = (low_w / width, low_h / height)
        outputs = [torch.empty(height, width, 3, dtype=torch.float32) for _ in times]
        for state, rows, cols, points in self.pair_states(first, second, height, width):
            started = time.perf_counter()
            rgb = self.query(state, points, times, cell)
            for out, frame in zip(outputs, rgb.unbind(1)):
                out[rows[0] : rows[1], cols[0] : cols[1]] = (
                    frame.reshape(3, rows[1] - rows[0], cols[1] - cols[0]).permute(1, 2, 0).float().cpu()
                )
            self.times.add("queries", started, self.device)
        return [out.clamp_(0, 1).numpy() for out in outputs]

    def render_tensor(
        self, first: FrameFeatures, second: FrameFeatures, times: list[float], height: int, width: int
    ) -> torch.Tensor:
        """The device path: RGB ``(3, T, height, width)`` where the queries ran (one tile: their output as is)."""
        low_h, low_w = first.size
        cell = (low_w / width, low_h / height)
        frames = None
        for state, rows, cols, points in self.pair_states(first, second, height, width):
            started = time.perf_counter()
            rgb = self.query(state, points, times, cell).float()
            part = rgb.view(3, len(times), rows[1] - rows[0], cols[1] - cols[0])
            if part.shape[-2:] == (height, width):
                frames = part
            else:
                if frames is None:
                    frames = rgb.new_empty(3, len(times), height, width)
                frames[:, :, rows[0] : rows[1], cols[0] : cols[1]] = part
            self.times.add("queries", started, self.device, self.options.timing)
        if frames is None:
            raise ValueError(f"Upsampler: no tile covers a {width}x{height} frame")
        return frames

    def to_host(self, frame: torch.Tensor, into: FrameFormat | None) -> HostFrame:
        """One output frame ``(3, H, W)`` converted on its device (to ``into``, else to clamped RGB rows) and
        copied into pinned host memory on a side stream, so the next frame's work does not wait for it."""
        started = time.perf_counter()
        if into is not None:
            data = ops.rgb_to_yuv420(frame, into.matrix, into.bits)
        else:
            data = frame.clamp(0, 1).permute(1, 2, 0).contiguous()
        copied = None
        if data.device.type == "cuda":
            if self._copies is None:
                self._copies = torch.cuda.Stream(data.device)
            host = torch.empty(data.shape, dtype=data.dtype, pin_memory=True)
            self._copies.wait_stream(torch.cuda.current_stream(data.device))
            with torch.cuda.stream(self._copies):
                host.copy_(data, non_blocking=True)
                data.record_stream(self._copies)  # its memory is not reused before the copy is done
                copied = torch.cuda.Event()
                copied.record()
            data = host
        self.transfers.add(data.numel() * data.element_size(), synchronisations=1)
        self.times.add("convert", started, self.device, self.options.timing)
        return HostFrame(data, into, copied)
