"""Whole-frame inference: tiles are seamless, and memory stays bounded on large frames."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from models import registry
from models.videoinr.network import VideoINR
from models.videoinr.upsampler import UpsampleOptions, Upsampler
from tests.clips import moving_texture
from tests.networks import PRECISION_TOLERANCE, SERVED, precision_gap, random_videoinr


@pytest.fixture(scope="module")
def model() -> VideoINR:
    return random_videoinr()


def frames(height, width):
    clip = moving_texture(2, height, width, velocity=(2.0, 1.0))
    return [f.permute(1, 2, 0).numpy() for f in clip]


@pytest.mark.parametrize("size", [(3.5, (70, 90)), (1.7, (61, 47))])
def test_tiled_equals_untiled(model, size):
    scale, (h, w) = size
    a, b = frames(h, w)
    out_h, out_w = round(h * scale), round(w * scale)
    whole = Upsampler(model, options=UpsampleOptions(tile=0))
    tiled = Upsampler(model, options=UpsampleOptions(tile=24, halo=16))
    assert len(tiled.tiles(h, w)) > 4
    ref = whole.render(whole.features(a), whole.features(b), [0.0, 0.4], out_h, out_w)
    got = tiled.render(tiled.features(a), tiled.features(b), [0.0, 0.4], out_h, out_w)
    for x, y in zip(ref, got):
        assert x.shape == (out_h, out_w, 3)
        assert np.abs(x - y).max() < 2 / 255 and np.abs(x - y).mean() < 0.2 / 255


@pytest.mark.parametrize("name", SERVED)
def test_shipped_model_tiled_equals_untiled_within_one_level(name):
    """The served checkpoints with the default halo: tiles (odd sizes, offsets that are not multiples of
    the flow pyramid's stride) change no 8-bit output level by more than 1."""
    shipped = registry.load(name)
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 200, 272, velocity=(3.0, 2.0)))
    whole = Upsampler(shipped, options=UpsampleOptions(tile=0))
    tiled = Upsampler(shipped, options=UpsampleOptions(tile=40))
    assert len(tiled.tiles(200, 272)) >= 20
    ref = whole.render(whole.features(a), whole.features(b), [0.0, 0.25, 0.5], 300, 408)
    got = tiled.render(tiled.features(a), tiled.features(b), [0.0, 0.25, 0.5], 300, 408)
    for x, y in zip(ref, got):
        assert np.abs(np.round(x * 255) - np.round(y * 255)).max() <= 1


@pytest.mark.slow
def test_4k_frame_on_cpu_stays_within_memory(model):
    """A 3840x2160 input frame, upsampled 1.5x in tiles, peaks far below the machine's 24 GiB."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image = np.random.default_rng(0).random((2160, 3840, 3), dtype=np.float32)
    upsampler = Upsampler(model, options=UpsampleOptions(tile=256))
    code = upsampler.features(image)
    out = upsampler.render(code, code, [0.5], 3240, 5760)[0]
    peak_gib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20
    assert out.shape == (3240, 5760, 3) and peak_gib < 8


@pytest.mark.parametrize("name", SERVED)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_shipped_weights_keep_the_gpu_tests_half_precision_tolerance_on_the_cpu(dtype, name):
    """The GPU test's bound, under the CPU's autocast: weights whose output a half-precision
    convolution moves too far (as a fine-tune of v4 did under TF32 and float16 on CUDA) fail here too,
    on a machine without a GPU. (v4: 0.0002 in float16, 0.002 in bfloat16 since positions and flows stay
    float32 under autocast; 0.003 and 0.038 before.)"""
    assert precision_gap("cpu", dtype, name) < PRECISION_TOLERANCE[dtype]


def test_half_precision_runs_under_autocast_with_float32_coordinates():
    """bfloat16 (here on the CPU, with its queries under autocast as on CUDA) keeps float32 weights and
    coordinates and stays close to float32 on a frame wider than float16 can index exactly."""
    model = registry.load("videoinr-s")
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 16, 2100))
    full = Upsampler(model, "cpu", options=UpsampleOptions(tile=0))
    half = Upsampler(registry.load("videoinr-s"), "cpu", torch.bfloat16, UpsampleOptions(tile=0))
    assert half.autocast == torch.bfloat16 and next(half.model.parameters()).dtype == torch.float32
    assert half.query_autocast is None  # a CPU's queries stay float32 (faster there, docs/benchmarks.md)
    half.query_autocast = torch.bfloat16
    ref = full.render(full.features(a), full.features(b), [0.5], 24, 3150)[0]
    got = half.render(half.features(a), half.features(b), [0.5], 24, 3150)[0]
    assert np.abs(ref - got).mean() < 2e-2  # bfloat16 keeps 8 bits; a wrong pixel index costs far more
    assert np.abs(ref - got).max() < 0.25


def test_cpu_bfloat16_runs_the_convolutional_stages_only_and_stays_close():
    """``--bf16`` on a CPU: the frame encoder and pair stage in bfloat16, the queries in float32; the output
    stays within bfloat16's tolerance of float32 at t = 0 (the first frame's upsampling) and at t = 0.5."""
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 60, 88, velocity=(2.0, 1.0)))
    full = Upsampler(registry.load("videoinr-s"), "cpu", options=UpsampleOptions(tile=0))
    half = Upsampler(registry.load("videoinr-s"), "cpu", torch.bfloat16, UpsampleOptions(tile=0))
    ref = full.render(full.features(a), full.features(b), [0.0, 0.5], 120, 176)
    got = half.render(half.features(a), half.features(b), [0.0, 0.5], 120, 176)
    for x, y in zip(ref, got):
        assert x.dtype == y.dtype == np.float32
        assert np.abs(x - y).max() < PRECISION_TOLERANCE[torch.bfloat16] and np.abs(x - y).mean() < 2e-3
