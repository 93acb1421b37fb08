"""The device path (what CUDA runs), on the CPU: its counts per output frame stay bounded, its frames equal
the CPU path's, and its YUV planes equal what the encoder's own conversion makes."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from bench.dispatch import WORKLOADS, count
from models import ops, registry
from models.videoinr.upsampler import FrameFormat, UpsampleOptions, Upsampler
from tests.clips import moving_texture
from tests.networks import SERVED

DEVICE_MEMORY = 24 * 10**9
"""The device memory the counts are planned for (a 24 GB GPU)."""
BOUNDS = {"270p30-1080p120": 250, "540p-1080p": 600}
"""Most ATen calls per 1080p output frame (issue #39; about 5,800 and 7,700 before the device path)."""


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_device_path_makes_few_calls_copies_uint8_and_waits_once_per_frame(workload):
    lh, lw, hh, hw, times = WORKLOADS[workload]
    got = count(registry.load(registry.DEFAULT_MODEL), (lh, lw), (hh, hw), times, memory=DEVICE_MEMORY)
    assert got.tiles == 1 and got.chunk >= hh * hw * times  # a 1080p frame (all of a pair's times) is one chunk
    assert got.calls <= BOUNDS[workload], got.top
    assert got.host_bytes <= 1.5 * hh * hw  # 8-bit 4:2:0, nothing else
    assert got.synchronisations <= 1.0  # the copy out, and no other wait


def test_chunks_and_tiles_follow_the_memory_planned_for():
    model = registry.load(registry.DEFAULT_MODEL)
    small = Upsampler(model, "meta", options=UpsampleOptions(path="device", memory=1 << 30))
    large = Upsampler(model, "meta", options=UpsampleOptions(path="device", memory=80 << 30))
    assert small.chunk < large.chunk
    assert len(small.tiles(1080, 1920)) > 1 and len(large.tiles(1080, 1920)) == 1
    cpu = Upsampler(registry.load(registry.DEFAULT_MODEL), "cpu")
    assert not cpu.on_device and cpu.chunk == 32768 and cpu.tile_side(1080, 1920) == 512


@pytest.mark.parametrize("name", SERVED)
@pytest.mark.parametrize("tile", [0, 40])
def test_device_path_equals_the_cpu_path(name, tile):
    """Portable ops in one chunk (and both warps in one grid_sample) against the CPU kernels in small
    chunks: the same frames, tiled and untiled, within the kernels' tolerance."""
    model = registry.load(name)
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 72, 100, velocity=(3.0, 2.0)))
    cpu = Upsampler(model, options=UpsampleOptions(tile=tile, path="cpu", chunk=4096))
    device = Upsampler(model, options=UpsampleOptions(tile=tile, path="device", memory=1 << 30))
    assert device.on_device and device.chunk > 252 * 350 * 3
    ref = cpu.render(cpu.features(a), cpu.features(b), [0.0, 0.3, 0.7], 252, 350)
    got = device.render(device.features(a), device.features(b), [0.0, 0.3, 0.7], 252, 350)
    for x, y in zip(ref, got):
        assert x.shape == y.shape == (252, 350, 3)
        assert np.abs(x - y).max() < 1e-4


def test_warp_pair_equals_two_backward_warps():
    feat0, feat1 = torch.rand(2, 5, 17, 23), torch.rand(2, 5, 17, 23)
    flow = torch.randn(2, 4, 17, 23) * 4
    with torch.no_grad(), ops.portable_ops():
        warped1, warped0 = ops.warp_pair(feat0, feat1, flow)
        assert not ops.cpu_inference(feat0)
        ref1, ref0 = ops.backward_warp(feat1, flow[:, :2]), ops.backward_warp(feat0, flow[:, 2:])
    assert torch.allclose(warped1, ref1, atol=1e-5) and torch.allclose(warped0, ref0, atol=1e-5)


def writer_planes(rgb: np.ndarray, pix_fmt: str, matrix: int) -> np.ndarray:
    """What ``VideoWriter.write`` makes of a float RGB frame: rounded to 8 or 16 bits, then FFmpeg's swscale."""
    high = pix_fmt.endswith("10le")
    peak, dtype = (65535, np.uint16) if high else (255, np.uint8)
    pixels = np.clip(np.rint(rgb * peak), 0, peak).astype(dtype)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb48le" if high else "rgb24")
    frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=1, interpolation="BICUBIC")
    return frame.to_ndarray()


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
@pytest.mark.parametrize("matrix", [1, 6])
def test_device_conversion_equals_the_encoders_conversion(pix_fmt, matrix):
    """The planes made on the device are FFmpeg's within one level of luma and chroma at 8 bits, for BT.709
    and BT.601, on a frame whose height is not a multiple of 4. At 10 bits within four levels (one 8-bit
    step): swscale scales 10-bit limited range as 8-bit times 1023/255 (white at 943), the device path as
    the standards do (white at 940)."""
    height, width = 90, 128
    model = registry.load(registry.DEFAULT_MODEL)
    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 30, 40))
    device = Upsampler(model, options=UpsampleOptions(path="device", memory=1 << 30))
    first, second = device.features(a), device.features(b)
    frame = device.render_frames(first, second, [0.5], height, width, into=FrameFormat(pix_fmt, matrix))[0]
    rgb = device.render(first, second, [0.5], height, width)[0]
    got, ref = frame.pixels(), writer_planes(rgb, pix_fmt, matrix)
    assert got.shape == ref.shape == (height * 3 // 2, width)
    assert got.dtype == ref.dtype
    difference = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    if pix_fmt.endswith("10le"):
        assert difference.max() <= 4 and difference.mean() < 2
    else:
        assert difference.max() <= 1 and difference.mean() < 0.3
