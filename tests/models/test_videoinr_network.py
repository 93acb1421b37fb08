"""VideoINR network: shapes, time consistency, chunking, feature caching, checkpoints, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import ops, registry
from models.videoinr import train
from models.videoinr.network import PRESETS, VideoINR
from tests.clips import moving_texture
from tests.networks import SERVED, random_videoinr


@pytest.fixture(scope="module")
def random_model() -> VideoINR:
    return random_videoinr(noise=0.02)


@pytest.fixture(scope="module", params=[*SERVED, "videoinr-s-v2", "videoinr-s-v1"])
def shipped(request) -> VideoINR:
    """The served checkpoints (the default and the opt-in 48-wide one), and earlier versions (kept loadable
    under versioned names)."""
    return registry.load(request.param)


def encode(model, frames):
    feats = [model.encode_frame(f[None]) for f in frames]
    return model.encode_pair(frames[:1], frames[1:2], feats[0], feats[1])


@pytest.mark.parametrize("scale", [3.5, 1.7, 4.0])
def test_output_shape_on_odd_input(random_model, scale):
    frames = torch.rand(2, 3, 17, 23)
    height, width = round(17 * scale), round(23 * scale)
    with torch.no_grad():
        out = random_model.query_frame(encode(random_model, frames), height, width, 0.3)
    assert out.shape == (1, 3, height, width)
    assert torch.isfinite(out).all()


def test_endpoints_reproduce_their_input_frame(shipped):
    clip = moving_texture(5, 64, 64, velocity=(2.0, 1.0))
    low = ops.degrade(clip, 16)
    with torch.no_grad():
        state = encode(shipped, low[[0, 4]])
        outs = {t: shipped.query_frame(state, 64, 64, t).clamp(0, 1) for t in (0.0, 0.5, 1.0)}
    assert ops.psnr(outs[0.0], clip[:1]) > ops.psnr(outs[0.5], clip[:1]) + 1.0
    assert ops.psnr(outs[1.0], clip[4:5]) > ops.psnr(outs[0.5], clip[4:5]) + 1.0


def test_chunked_queries_equal_unchunked(random_model):
    frames = torch.rand(2, 3, 13, 19)
    with torch.no_grad():
        state = encode(random_model, frames)
        whole = random_model.query_frame(state, 45, 66, 0.4, chunk=10**6)
        chunked = random_model.query_frame(state, 45, 66, 0.4, chunk=97)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


@pytest.mark.parametrize("preset", ["videoinr-s", "videoinr-s-v2", "videoinr-s-v1"])
def test_all_times_of_a_pair_in_one_batch_equal_one_at_a_time(preset):
    model = random_videoinr(PRESETS[preset], noise=0.02)
    frames = torch.rand(2, 3, 11, 14)
    times = [0.0, 0.3, 0.75, 1.0]
    points = ops.pixel_centres(31, 40, 11 / 31, 14 / 40)
    with torch.no_grad():
        state = encode(model, frames)
        together = model.query_points(state, points, times, (14 / 40, 11 / 31), chunk=500)  # chunks split points
        alone = [model.query_points(state, points, [t], (14 / 40, 11 / 31))[:, :, 0] for t in times]
    assert together.shape == (1, 3, len(times), 31 * 40)
    for index, frame in enumerate(alone):
        torch.testing.assert_close(together[:, :, index], frame, rtol=0, atol=1e-5)


def test_the_spatial_code_is_shared_across_times_only_when_it_ignores_t():
    assert PRESETS["videoinr-s"].spatial_time is False and PRESETS["videoinr-s-v1"].spatial_time is True
    assert registry.load("videoinr-s").spatial_time is False
    assert registry.load("videoinr-s-v1").spatial_time is True  # an old spec without the field loads as v1


def test_cached_frame_features_equal_recomputed(random_model):
    frames = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        cached = random_model.encode_frame(frames[1:2])
        first = random_model.encode_pair(frames[:1], frames[1:2], random_model.encode_frame(frames[:1]), cached)
        second_cached = random_model.encode_pair(frames[1:2], frames[2:], cached, random_model.encode_frame(frames[2:]))
        second_fresh = encode(random_model, frames[1:])
        a = random_model.query_frame(second_cached, 40, 40, 0.5)
        b = random_model.query_frame(second_fresh, 40, 40, 0.5)
    assert first.features.shape[1] == 3 * random_model.channels
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_round_trip(random_model, tmp_path):
    path = registry.save(random_model, tmp_path / "tiny", {"note": "test"})
    loaded = registry.load(path)
    assert loaded.card["note"] == "test" and loaded.card["spec"]["name"] == "videoinr"
    frames = torch.rand(2, 3, 11, 12)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.query_frame(encode(loaded, frames), 30, 30, 0.7),
            random_model.query_frame(encode(random_model, frames), 30, 30, 0.7),
        )


def test_checkpoint_with_wrong_weights_is_refused(random_model, tmp_path):
    path = registry.save(random_model, tmp_path / "tiny", {})
    card = registry.read_card(path)
    card["spec"]["args"]["hidden"] = 48
    path.with_suffix(".json").write_text(__import__("json").dumps(card))
    with pytest.raises(registry.CheckpointError, match="does not match"):
        registry.load(path)
    with pytest.raises(registry.CheckpointError, match="no checkpoint"):
        registry.load(tmp_path / "missing")


def test_training_steps_reduce_loss():
    torch.manual_seed(0)
    clip = moving_texture(9, 64, 64, velocity=(1.0, 0.5))
    windows = (clip.permute(0, 2, 3, 1).numpy()[None] * 255).round().astype(np.uint8)
    model = VideoINR.from_config(PRESETS["videoinr-s"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = train.sample_batch(windows, np.random.default_rng(0), 4, 16, 1024)
    losses = []
    for _ in range(40):
        loss = ops.charbonnier(model(batch.image0, batch.image1, batch.points, batch.t, batch.cell), batch.target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_shipped_checkpoint_beats_bicubic_blend(shipped):
    clip = moving_texture(5, 96, 96, velocity=(1.5, -1.0), seed=3)
    low = ops.degrade(clip, 24)
    up0, up1 = ops.resize(low[:1], 96, 96), ops.resize(low[4:], 96, 96)
    ours, blend = [], []
    with torch.no_grad():
        state = encode(shipped, low[[0, 4]])
        for k in range(1, 4):
            t = k / 4
            ours.append(ops.psnr(shipped.query_frame(state, 96, 96, t).clamp(0, 1), clip[k : k + 1]))
            blend.append(ops.psnr(((1 - t) * up0 + t * up1).clamp(0, 1), clip[k : k + 1]))
    assert np.mean(ours) > np.mean(blend) + 0.5


def test_earlier_versions_stay_loadable_by_versioned_names():
    for name in ("videoinr-s", "videoinr-s-v2", "videoinr-s-v1"):
        assert registry.load(name).config == PRESETS[name]
    assert registry.load("videoinr-s-v3").config == PRESETS["videoinr-s"]  # v4 is v3 trained longer
    assert registry.load("videoinr-s").config.activation == "relu"
    assert registry.load("videoinr-s-v2").config.hidden == 64
    assert registry.load("videoinr-s48").config == PRESETS["videoinr-s48"]


def test_warps_keep_float32_positions_under_bfloat16_autocast():
    """A bfloat16 position is a whole pixel off past 256 pixels: under autocast (``--bf16`` convolutions) a
    warp samples at float32 positions, so a ramp moved by a fractional flow keeps its values to within
    bfloat16's rounding of them, as without autocast."""
    ramp = torch.arange(600, dtype=torch.float32).expand(1, 1, 4, 600) / 600  # value = x / 600
    flow = torch.full((1, 2, 4, 600), 0.3)
    flow[:, 1] = 0
    want = ops.backward_warp(ramp, flow)
    with torch.autocast("cpu", torch.bfloat16):
        got = ops.backward_warp(ramp.bfloat16(), flow.bfloat16())
    inside = (slice(None), slice(None), slice(None), slice(0, 599))
    assert (want[inside] - (torch.arange(599) + 0.3) / 600).abs().max() < 1e-5
    assert (got.float() - want)[inside].abs().max() < 4e-3  # bfloat16's 8-bit mantissa of values up to 1


def test_cpu_inference_kernels_equal_the_portable_path(shipped):
    """No autograd on a CPU: channels-last convolutions, row warps, fused products and embedding-bag sampling;
    with autograd (training, the ONNX export's trace) the portable ops. Both must give the same frames."""
    frames = torch.rand(2, 3, 19, 27)
    with torch.no_grad():
        state = encode(shipped, frames)
        assert state.decoder_maps.is_contiguous(memory_format=torch.channels_last)
        fast = shipped.query_points(state, ops.pixel_centres(50, 70, 19 / 50, 27 / 70), [0.0, 0.4, 1.0], (0.4, 0.4))
    portable_state = encode(shipped, frames)
    portable = shipped.query_points(
        portable_state, ops.pixel_centres(50, 70, 19 / 50, 27 / 70), [0.0, 0.4, 1.0], (0.4, 0.4)
    )
    torch.testing.assert_close(fast, portable.detach(), rtol=0, atol=1e-4)


def test_folded_code_projections_equal_the_spatial_code_then_both_first_layers(random_model):
    """The SpatialINR's last layer folded into the layers that read z: the same numbers as running it."""
    hidden = torch.randn(300, random_model.config.hidden)
    weight, bias = random_model.code_projections()
    code = random_model.spatial[-1](hidden)
    temporal = random_model.parts(random_model.temporal[0], random_model.temporal_inputs)
    decoder = random_model.parts(random_model.decoder[0], random_model.decoder_inputs)
    colours = torch.cat([decoder["rgb0"], decoder["rgb1"]], 1)
    expected_t = code @ temporal["z"].t() + random_model.temporal[0].bias
    expected_d = code @ decoder["z"].t() + random_model.decoder[0].bias - 0.5 * colours.sum(1)
    folded = hidden @ weight.t() + bias
    torch.testing.assert_close(folded, torch.cat([expected_t, expected_d], 1), rtol=0, atol=1e-4)


def test_frame_features_are_channels_last_from_a_permuted_array(random_model):
    """An (h, w, 3) array's permuted view (what the Upsampler passes) still gives channels-last features,
    so the pair stage's convolutions and warps take their row paths."""
    pixels = torch.rand(23, 31, 3).permute(2, 0, 1)[None]
    with torch.no_grad():
        features = random_model.encode_frame(pixels)
    assert features.stride(1) == 1 and features.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(features, random_model.encode_frame(pixels.contiguous()).detach(), rtol=0, atol=1e-5)
