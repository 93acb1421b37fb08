"""Clips the tests generate: moving textures as tensors (video files come from tests/media.py)."""

from __future__ import annotations

import torch

from models import ops


def moving_texture(frames: int, height: int, width: int, velocity=(1.5, 0.75), seed: int = 0) -> torch.Tensor:
    """``(T, 3, H, W)`` in [0, 1]: a multi-scale random texture translating ``velocity`` px per frame."""
    gen = torch.Generator().manual_seed(seed)
    pad = int(abs(velocity[0]) * frames + abs(velocity[1]) * frames) + 8
    big_h, big_w = height + 2 * pad, width + 2 * pad
    texture = torch.zeros(1, 3, big_h, big_w)
    for factor, weight in ((8, 0.5), (4, 0.3), (2, 0.2)):
        noise = torch.rand(1, 3, big_h // factor + 2, big_w // factor + 2, generator=gen)
        texture += weight * ops.resize(noise, big_h, big_w)
    base = ops.pixel_centres(height, width) + pad
    out = []
    for k in range(frames):
        shift = torch.tensor([velocity[0] * k, velocity[1] * k])
        sampled = ops.sample_points(texture, (base + shift)[None], "bicubic")
        out.append(sampled[0].T.reshape(3, height, width))
    return torch.stack(out).clamp(0, 1)
