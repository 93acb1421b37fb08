"""Shared tensor ops: pixel grids, point sampling, backward warping, resizing, colour and PSNR.

Conventions: images are ``(B, C, H, W)`` floats in [0, 1]; a point ``(x, y)`` is in pixel units of
the image it samples, with pixel ``i`` covering ``[i, i + 1)`` so its centre is ``i + 0.5``; flows
are ``(B, 2, H, W)`` displacements ``(dx, dy)`` in pixels.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F


def pixel_centres(
    height: int, width: int, scale_y: float = 1.0, scale_x: float = 1.0, *, device=None, dtype=torch.float32
) -> torch.Tensor:
    """``(H*W, 2)`` (x, y) centres of an H x W grid, mapped by ``scale`` into another grid's units.

    With ``scale = h / H`` the centres of an H x W output land in the pixel units of an h x w input
    covering the same picture.
    """
    # float32 ranges, then the dtype: ONNX's Range has no float16, and half loses integers above 2048
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * scale_y
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * scale_x
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1).to(dtype)


def size_xy(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(width, height)`` of an image ``(..., H, W)`` as a tensor; traced as a shape, so an ONNX export
    keeps the sizes dynamic (``new_tensor([w, h])`` would freeze the example's)."""
    if not tracing():
        return on_device([image.shape[-1], image.shape[-2]], image.device, dtype)
    return torch._shape_as_tensor(image)[-2:].flip(0).to(device=image.device, dtype=dtype)


def on_device(values: list[float], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small tensor of host numbers on ``device`` without waiting for it: a blocking copy to a GPU (what
    ``new_tensor`` makes) synchronises the stream, so the host would stop running ahead of the device."""
    return torch.tensor(values, dtype=dtype).to(device, non_blocking=True)


def to_grid(points: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Pixel-unit (x, y) points ``(B, N, 2)`` -> grid_sample coordinates ``(B, 1, N, 2)``; ``size`` is (w, h)."""
    return (points * (2.0 / size) - 1.0).unsqueeze(1)


def sample_points(image: torch.Tensor, points: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``image`` ``(B, C, h, w)`` at pixel-unit points ``(B, N, 2)`` -> ``(B, N, C)``.

    Border padding: points outside repeat the edge (what a backward warp at a frame border wants).
    """
    return grid_sample(image, points, mode)[:, :, 0, :].transpose(1, 2)


def autocasting(tensor: torch.Tensor) -> bool:
    """Whether half-precision autocast is on for ``tensor``'s device: positions then stay float32 (a bfloat16
    coordinate is a whole pixel off past 256, a normalised one 0.4 pixel at 200)."""
    if tensor.device.type == "meta":  # shapes only (bench.dispatch): no autocast there
        return False
    return torch.is_autocast_enabled(tensor.device.type)


def grid_sample(image: torch.Tensor, points: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``sample_points`` in ``grid_sample``'s own layout: ``(B, C, 1, N)`` (channels first, no transpose);
    in float32 under autocast."""
    grid = to_grid(points, size_xy(image, points.dtype))
    if autocasting(image):
        image, grid = image.float(), grid.float()
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="border", align_corners=False)


PORTABLE: ContextVar[bool] = ContextVar("vinr_portable_ops", default=False)
"""Set by ``portable_ops``: the CPU inference kernels stand aside (per thread and task, as a ContextVar is)."""


@contextlib.contextmanager
def portable_ops() -> Iterator[None]:
    """Run the code path a GPU takes on any device: the CPU inference kernels below stand aside, so a CPU
    computes (and ``bench.dispatch`` counts) what CUDA would."""
    token = PORTABLE.set(True)
    try:
        yield
    finally:
        PORTABLE.reset(token)


def tracing() -> bool:
    """Whether a trace (TorchScript or an ONNX export) is recording: shapes must stay symbolic there."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def cpu_inference(tensor: torch.Tensor) -> bool:
    """Whether the CPU inference kernels below apply to ``tensor``: float32 on a CPU, no autograd, no
    autocast, not traced for an ONNX export (which takes the portable ops), not inside ``portable_ops``."""
    return (
        tensor.device.type == "cpu"
        and not PORTABLE.get()
        and tensor.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not autocasting(tensor)
        and not tracing()
    )


def _mkldnn_linear() -> Any:
    """oneDNN's linear with a fused activation (what inductor calls on CPUs), or None where absent."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


MKLDNN_LINEAR = _mkldnn_linear()
"""``torch.ops.mkldnn._linear_pointwise`` where this torch has it (read once; it is not state)."""


def linear_rows(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool = False) -> torch.Tensor:
    """``F.linear`` over rows ``(..., K)`` -> ``(..., M)``, then ReLU if ``relu``.

    For CPU inference one oneDNN call does the product, the bias and the ReLU (2x faster than a
    channels-first product with a bias pass and a ReLU pass for 48-wide layers, docs/benchmarks.md).
    """
    if MKLDNN_LINEAR is not None and weight.is_contiguous() and bias is not None and cpu_inference(x):
        out = MKLDNN_LINEAR(x.reshape(-1, x.shape[-1]), weight, bias, "relu" if relu else "none", [], "")
        return out.view(*x.shape[:-1], weight.shape[0])
    out = F.linear(x, weight, bias)
    if relu:
        out = torch.relu(out) if torch.is_grad_enabled() else torch.relu_(out)
    return out


def bilinear_sum(maps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``K`` maps summed: ``sum_k maps[b * K + k]`` at ``points[b, ..., k, :]``.

    ``maps`` ``(B * K, C, h, w)``, pixel-unit ``points`` ``(B, ..., K, 2)`` -> ``(B, ..., C)``, rows.
    Border padding, as ``grid_sample`` (``ops.grid_sample`` is the portable form). On a CPU every output
    row is one ``embedding_bag`` of ``4 K`` weighted rows of the maps in channels-last layout (free when
    ``maps`` is channels-last): 7x faster than ``grid_sample``, its sum and its transpose for 48 channels.
    """
    batch, k = points.shape[0], points.shape[-2]
    channels, h, w = maps.shape[1:]
    if not cpu_inference(maps) or h < 2 or w < 2:
        dims = points.dim()  # explicit permutations: ONNX's exporter writes negative ones as they are
        flat = points.permute(0, dims - 2, *range(1, dims - 2), dims - 1).reshape(batch * k, -1, 2)  # (B*K, P, 2)
        sampled = grid_sample(maps, flat).view(batch, k, channels, *points.shape[1:-2]).sum(1)
        return sampled.permute(0, *range(2, dims - 1), 1)
    size = points.new_tensor([w, h])
    # pixel index space (centre of pixel i at i), clamped as border padding; the left tap at most size - 2
    # so that the right tap is inside (at the far edge the weight moves wholly onto it: the same value)
    position = torch.minimum((points - 0.5).clamp_min_(0), size - 1)
    left = torch.minimum(position.floor(), size - 2)
    fx, fy = (position - left).unbind(-1)
    gx, gy = 1 - fx, 1 - fy
    # per tap, in the order of the row offsets 0, 1, w, w + 1: (B, ..., K, 4) then (B, ..., 4K); same-shape products
    weights = (torch.stack([gx, fx, gx, fx], -1) * torch.stack([gy, gy, fy, fy], -1)).flatten(-2)
    left = left.int()
    map_index = torch.arange(batch * k, device=maps.device, dtype=torch.int32)
    first = map_index.view(batch, *[1] * (points.dim() - 3), k) * (h * w) + left[..., 1] * w + left[..., 0]
    taps = (first.unsqueeze(-1) + first.new_tensor([0, 1, w, w + 1])).flatten(-2)  # (B, ..., 4K): rows read
    table = maps.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when maps are channels-last
    rows = F.embedding_bag(taps.reshape(-1, 4 * k), table, per_sample_weights=weights.reshape(-1, 4 * k), mode="sum")
    return rows.view(*points.shape[:-2], channels)


def nearest_centres(points: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Centre of the pixel containing each point (clamped inside an image of ``size`` (w, h)), ``(B, N, 2)``."""
    return torch.minimum(torch.floor(points).clamp(min=0), size - 1) + 0.5


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``out[p] = image[p + flow[p]]`` with bilinear sampling and border padding."""
    _, _, h, w = image.shape
    base = pixel_centres(h, w, device=image.device, dtype=torch.float32 if autocasting(image) else image.dtype)
    if cpu_inference(image) and image.is_contiguous(memory_format=torch.channels_last):
        # rows in, rows out: channels-last maps, as the convolutions before and after take them
        points = base.view(1, h, w, 1, 2) + flow.permute(0, 2, 3, 1).unsqueeze(3)
        return bilinear_sum(image, points).permute(0, 3, 1, 2)
    points = base.unsqueeze(0) + flow.flatten(2).transpose(1, 2)
    return sample_points(image, points).transpose(1, 2).reshape(image.shape[0], -1, h, w)


def warp_pair(feat0: torch.Tensor, feat1: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``feat1`` warped by ``flow[:, :2]`` and ``feat0`` by ``flow[:, 2:]`` (``backward_warp`` twice).

    Inference off the CPU kernels (a GPU, or ``portable_ops``) makes both in one ``grid_sample`` over a
    batch of two, its grid built from two ``linspace`` rows: 18 ATen calls where two ``backward_warp``
    calls make 68 (the host's dispatch, not the device, is what a GPU waits on at these sizes).
    """
    if cpu_inference(feat0) or torch.is_grad_enabled() or tracing():
        return backward_warp(feat1, flow[:, :2]), backward_warp(feat0, flow[:, 2:])
    batch, channels, h, w = feat0.shape
    images = torch.stack([feat1, feat0], 1).view(2 * batch, channels, h, w)
    if autocasting(images):
        images = images.float()
    # grid_sample's units (align_corners=False): pixel centre i at (i + 0.5) * 2 / w - 1, a pixel of flow 2 / w
    xs = torch.linspace(1 / w - 1, 1 - 1 / w, w, device=flow.device, dtype=flow.dtype)
    ys = torch.linspace(1 / h - 1, 1 - 1 / h, h, device=flow.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (h, w, 2)
    steps = on_device([2 / w, 2 / h], flow.device, flow.dtype)
    grid = torch.addcmul(base, flow.reshape(2 * batch, 2, h, w).permute(0, 2, 3, 1), steps)
    out = F.grid_sample(images, grid.to(images.dtype), padding_mode="border", align_corners=False)
    out = out.view(batch, 2, channels, h, w)
    return out[:, 0], out[:, 1]


COLOUR_MATRICES = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114)}
"""(Kr, Kb) of the YUV matrices we write, by FFmpeg's colour space number (BT.709; BT.601 as 470BG or 170M)."""


def rgb_to_yuv420(rgb: torch.Tensor, matrix: int, bits: int = 8) -> torch.Tensor:
    """Planar limited-range 4:2:0 YUV of an RGB frame ``(3, H, W)`` in [0, 1] (H, W even), as one array
    ``(3 H / 2, W)``: Y, then U, then V rows (what ``av.VideoFrame.from_ndarray`` takes for ``yuv420p`` and
    ``yuv420p10le``); uint8 for 8 bits, int16 holding 10-bit values otherwise.

    ``matrix`` is FFmpeg's colour space number: 1 BT.709, 5/6 BT.601. Chroma is the 2x2 mean (centre
    sited), what FFmpeg's swscale writes for this conversion (within one 8-bit level; at 10 bits white is
    940 as the standards say, where swscale writes 943: tests/models/test_device_path.py).
    """
    kr, kb = COLOUR_MATRICES[matrix]
    r, g, b = rgb.clamp(0, 1).unbind(0)
    luma = kr * r + (1 - kr - kb) * g + kb * b
    pb, pr = (b - luma) * (0.5 / (1 - kb)), (r - luma) * (0.5 / (1 - kr))
    chroma = F.avg_pool2d(torch.stack([pb, pr])[None], 2)[0]  # (2, H/2, W/2)
    peak = 1 << (bits - 8)
    y = luma.mul(219 * peak).add_(16 * peak)
    uv = chroma.mul(224 * peak).add_(128 * peak)
    planes = torch.cat([y.flatten(), uv.flatten()]).round_()
    return planes.to(torch.uint8 if bits == 8 else torch.int16).view(-1, rgb.shape[-1])


def resize_flow(flow: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pixel-unit flows ``(B, 2k, h, w)`` of a pyramid level (a ``ceil_mode`` 2x2 pooling of ``like``'s
    level) upsampled to ``like``'s size: exactly 2x, doubled, then cut to size. Coarse pixel ``i`` covers
    fine pixels ``2i`` and ``2i + 1`` whatever the size, so a tile whose origin is a multiple of the
    pyramid's stride sees the same flows as the whole frame (a size-based resize of an odd size did not)."""
    up = F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=False) * 2.0
    return up[..., : like.shape[-2], : like.shape[-1]]


def resize(image: torch.Tensor, height: int, width: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize with antialiasing when shrinking (like MATLAB ``imresize``), no clamping."""
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    return F.interpolate(
        image,
        size=(height, width),
        mode=mode,
        align_corners=False,
        antialias=shrinking and mode in ("bilinear", "bicubic"),
    )


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """BT.601 studio-range luma in [16/255, 235/255] from RGB in [0, 1], as the STVSR papers use."""
    weights = image.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1) / 255.0
    return (image * weights).sum(dim=1, keepdim=True) + 16.0 / 255.0


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (mean squared error over every element)."""
    mse = torch.mean((pred.double() - target.double()) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Per-pixel-normalised Charbonnier loss: mean of sqrt((pred - target)^2 + eps^2)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def degrade(frames: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """Bicubic (antialiased) downscale and 8-bit quantisation, as a real low-res input."""
    return torch.round(resize(frames, height, width or height).clamp(0, 1) * 255) / 255
