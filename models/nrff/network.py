"""NRFF: Neural Residual Flow Fields (Rho et al., "Neural Residual Flow Fields for Efficient Video
Representations", ACCV 2022).

A coordinate MLP over positionally encoded ``(x, y, t)`` outputs, per pixel, two flows (to the
frame's two reference keyframes), a blend weight ``a`` (sigmoid) and a residual (tanh):
``frame = a * warp(K0, f0) + (1 - a) * warp(K1, f1) + residual``, warps by bicubic ``grid_sample``.
Keyframes are the middle frame of each group of pictures (GOP); a frame uses its GOP's keyframe and
the neighbouring GOP's keyframe on its side.

Deviations: one MLP for the whole clip (the paper fits one per GOP) with the GOP-relative time as
an extra input, so small clips do not pay one network's overhead per GOP; flows are in pixels,
scaled by ``FLOW_SCALE`` so the MLP's outputs stay near unit size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from models import ops

FLOW_SCALE = 8.0
"""Pixels per unit of the flow outputs."""
LIMITS = {"width": (8, 512), "depth": (1, 8), "frequencies": (1, 16), "gop": (1, 300)}
"""Accepted ranges of the configuration (checked before anything is built from a file)."""


def positional_encoding(coords: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``(N, D)`` in [-1, 1] -> ``(N, D * (1 + 2F))``: the coordinates, then sin/cos at 2^k * pi."""
    scales = (2.0 ** torch.arange(frequencies, device=coords.device, dtype=coords.dtype)) * math.pi
    angles = coords[..., None] * scales
    return torch.cat([coords, angles.sin().flatten(-2), angles.cos().flatten(-2)], -1)


class NRFF(nn.Module):
    """Coordinate MLP (x, y, t, t_gop) -> flows to two keyframes, blend weight and residual."""

    def __init__(self, width: int = 64, depth: int = 3, frequencies: int = 8):
        super().__init__()
        self.frequencies = frequencies
        layers: list[nn.Module] = []
        in_dim = 4 * (1 + 2 * frequencies)
        for _ in range(depth):
            layers += [nn.Linear(in_dim, width), nn.GELU()]
            in_dim = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 4 + 1 + 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``(N, 4)`` coordinates -> ``(N, 8)``: flow 0 (2, pixels), flow 1 (2), blend logit, residual (3)."""
        out = self.head(self.body(positional_encoding(coords, self.frequencies)))
        return torch.cat([out[:, :4] * FLOW_SCALE, out[:, 4:5], torch.tanh(out[:, 5:])], 1)


def references(frame: int, frames: int, gop: int) -> tuple[int, int, float]:
    """Keyframe indices (into the keyframe list) a frame uses, and its time within its GOP in [-1, 1]."""
    groups = math.ceil(frames / gop)
    g = frame // gop
    start, stop = g * gop, min(frames, (g + 1) * gop)
    middle = start + (stop - start) // 2
    other = g - 1 if frame < middle and g > 0 else g + 1 if g + 1 < groups else max(g - 1, 0)
    span = max(1, stop - start - 1)
    return g, other, 2.0 * (frame - start) / span - 1.0


def keyframe_indices(frames: int, gop: int) -> list[int]:
    """Frame index of each GOP's keyframe (its middle frame)."""
    return [s + (min(frames, s + gop) - s) // 2 for s in range(0, frames, gop)]


def render(
    model: Callable[[torch.Tensor], torch.Tensor],
    keys: torch.Tensor,
    frame: int,
    frames: int,
    gop: int,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    """Pixels ``(len(rows) * len(cols), 3)`` of one frame from keyframes ``(K, 3, H, W)`` in [0, 1];
    ``model`` is an ``NRFF``, or one as stored (``quant.as_stored``)."""
    k0, k1, t_gop = references(frame, frames, gop)
    height, width = keys.shape[-2:]
    grid_y, grid_x = torch.meshgrid(rows.to(keys.dtype) + 0.5, cols.to(keys.dtype) + 0.5, indexing="ij")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], -1)
    t = 2.0 * frame / max(1, frames - 1) - 1.0
    coords = torch.cat(
        [
            points / points.new_tensor([width / 2, height / 2]) - 1,
            points.new_tensor([t, t_gop]).expand(points.shape[0], 2),
        ],
        1,
    )
    out = model(coords)
    warped0 = ops.sample_points(keys[k0 : k0 + 1], (points + out[:, 0:2])[None], "bicubic")[0]
    warped1 = ops.sample_points(keys[k1 : k1 + 1], (points + out[:, 2:4])[None], "bicubic")[0]
    blend = torch.sigmoid(out[:, 4:5] + 2.0)  # starts near the frame's own GOP keyframe
    return blend * warped0 + (1 - blend) * warped1 + out[:, 5:]


def predict_frame(model, keys: torch.Tensor, frame: int, frames: int, gop: int, chunk: int = 64) -> torch.Tensor:
    """The flow prediction of a whole frame ``(3, H, W)``, rendered ``chunk`` rows at a time."""
    height, width = keys.shape[-2:]
    cols = torch.arange(width, device=keys.device)
    parts = []
    for start in range(0, height, chunk):
        rows = torch.arange(start, min(height, start + chunk), device=keys.device)
        parts.append(render(model, keys, frame, frames, gop, rows, cols).view(len(rows), width, 3))
    return torch.cat(parts).permute(2, 0, 1)
