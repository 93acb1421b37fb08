"""CUDA inference matches the CPU (run with ``-m gpu`` on a machine with a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import registry
from models.videoinr.upsampler import UpsampleOptions, Upsampler
from tests.clips import moving_texture

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    model = registry.load("videoinr-s")
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 90, 160))
    cpu = Upsampler(model, "cpu", options=UpsampleOptions(tile=64))
    gpu = Upsampler(registry.load("videoinr-s"), "cuda", dtype, UpsampleOptions(tile=64))
    ref = cpu.render(cpu.features(a), cpu.features(b), [0.5], 315, 560)[0]
    got = gpu.render(gpu.features(a), gpu.features(b), [0.5], 315, 560)[0]
    assert np.abs(ref - got).max() < {torch.float32: 2e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}[dtype]
