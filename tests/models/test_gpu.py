"""CUDA inference matches the CPU (run with ``-m gpu`` on a machine with a GPU)."""

from __future__ import annotations

import pytest
import torch

from tests.networks import PRECISION_TOLERANCE, SERVED, precision_gap

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", SERVED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype, name):
    assert precision_gap("cuda", dtype, name) < PRECISION_TOLERANCE[dtype]
