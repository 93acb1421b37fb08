"""Random networks for tests: zero-initialised heads perturbed so that every path matters."""

from __future__ import annotations

import numpy as np
import torch

from models import registry
from models.videoinr.network import PRESETS, VideoINR, VideoINRConfig
from models.videoinr.upsampler import UpsampleOptions, Upsampler
from tests.clips import moving_texture

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


SERVED = ("videoinr-s", "videoinr-s48")
"""The upsampling checkpoints served by name today: the default and the opt-in 48-wide one. Tests of
shipped weights (tiles, precision, endpoints) run on each."""

PRECISION_TOLERANCE = {torch.float32: 2e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}
"""The largest difference from the CPU's float32 output that a served checkpoint may show in each
precision (on CUDA in tests/models/test_gpu.py; half precision also under the CPU's autocast)."""


def precision_gap(device: str, dtype: torch.dtype, name: str = "videoinr-s") -> float:
    """Largest |difference| of checkpoint ``name`` on ``device`` in ``dtype`` from the CPU in float32: one
    frame at t = 0.5, 3.5x a 160x90 pair of a moving texture, in 64-pixel tiles; every stage in ``dtype``
    (a CPU upsampler keeps its queries in float32 unless told otherwise)."""
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 90, 160))
    outputs = []
    for where, precision in (("cpu", torch.float32), (device, dtype)):
        upsampler = Upsampler(registry.load(name), where, precision, UpsampleOptions(tile=64))
        upsampler.query_autocast = upsampler.autocast  # the queries in half precision too, as on CUDA
        outputs.append(upsampler.render(upsampler.features(a), upsampler.features(b), [0.5], 315, 560)[0])
    return float(np.abs(outputs[0] - outputs[1]).max())
