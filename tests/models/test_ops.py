"""The CPU inference kernels of models/ops.py against the portable ops they stand in for."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import ops


def test_cpu_inference_only_without_autograd_on_float32_cpu_tensors():
    x = torch.zeros(2)
    with torch.no_grad():
        assert ops.cpu_inference(x)
        assert not ops.cpu_inference(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not ops.cpu_inference(x)
    assert not ops.cpu_inference(x)


@pytest.mark.parametrize("relu", [False, True])
def test_linear_rows_fused_equals_linear_then_relu(relu):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 3, 517, 48), torch.randn(40, 48), torch.randn(40)
    expected = F.linear(x, weight, bias)
    if relu:
        expected = expected.relu()
    with torch.no_grad():
        got = ops.linear_rows(x, weight, bias, relu)
        unbiased = ops.linear_rows(x[..., :7], weight[:, :7], None)  # a strided weight, no bias: F.linear
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)
    torch.testing.assert_close(unbiased, F.linear(x[..., :7], weight[:, :7]), rtol=0, atol=2e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bilinear_sum_equals_grid_sample_with_border_padding(channels_last):
    """Points inside, on the border, far outside and at the last pixel's centre, two items, two maps each."""
    torch.manual_seed(1)
    maps = torch.randn(4, 5, 9, 13)
    if channels_last:
        maps = maps.contiguous(memory_format=torch.channels_last)
    points = torch.rand(2, 3, 50, 2, 2) * torch.tensor([17.0, 13.0]) - 2.0
    points[0, 0, 0] = torch.tensor([[12.5, 8.5], [13.0, 9.0]])  # the last centre, the far corner
    points[1, 2, 1] = torch.tensor([[-40.0, 3.2], [0.0, -0.1]])
    with torch.no_grad():
        fast = ops.bilinear_sum(maps, points)
    portable = ops.bilinear_sum(maps, points)  # autograd on: grid_sample
    for b in range(2):
        expected = sum(
            ops.grid_sample(maps[[b * 2 + k]], points[b, :, :, k].reshape(1, -1, 2)).view(5, 3, 50).permute(1, 2, 0)
            for k in range(2)
        )
        torch.testing.assert_close(portable[b], expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(fast[b], expected, rtol=0, atol=1e-5)


def test_backward_warp_on_rows_equals_grid_sample():
    torch.manual_seed(2)
    image = torch.randn(2, 6, 11, 15).contiguous(memory_format=torch.channels_last)
    flow = torch.randn(2, 2, 11, 15) * 4
    with torch.no_grad():
        fast = ops.backward_warp(image, flow)
    portable = ops.backward_warp(image.contiguous(), flow)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, portable, rtol=0, atol=1e-5)
