"""Random networks for tests: zero-initialised heads perturbed so that every path matters."""

from __future__ import annotations

import torch

from models.videoinr.network import PRESETS, VideoINR, VideoINRConfig

TINY = VideoINRConfig(channels=8, encoder_blocks=1, motion_channels=8, fusion_blocks=1, hidden=16)
"""A VideoINR small enough that pipeline tests spend their time on the pipeline."""


def random_videoinr(config: VideoINRConfig = PRESETS["videoinr-s"], noise: float = 0.01, seed: int = 0) -> VideoINR:
    """A VideoINR in eval mode whose every weight is nudged by ``noise`` (seeded)."""
    torch.manual_seed(seed)
    model = VideoINR.from_config(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * noise)
    return model
