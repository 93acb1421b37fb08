"""NRFF: encode a tiny generated clip, decode it, check quality, header and determinism."""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import ops
from models.bitstream import container
from models.bitstream.container import BitstreamError
from models.nrff import residual
from models.nrff.decode import open_bitstream
from models.nrff.fit import FitOptions, file_bits, fit, split
from models.nrff.network import keyframe_indices

PSNR_FLOOR = 20.0
"""dB the tiny test clip must reach after 200 fitting steps at 0.6 bpp (about 24 dB is typical)."""


def test_encode_decode_quality_and_header(nrff_clip):
    frames, stream = nrff_clip
    decoder = open_bitstream(stream)
    h = decoder.header
    assert (h.codec, h.width, h.height, h.frames, h.fps) == ("nrff", 80, 64, 16, 30)
    assert 0.85 * 0.6 <= 8 * len(stream) / frames[..., 0].size <= 1.03 * 0.6  # the 0.6 bpp asked for
    decoded = np.stack([image for _, image in decoder.frames()])
    truth = frames.astype(np.float32) / 255
    scores = [ops.psnr(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(decoded, truth)]
    assert np.mean(scores) > PSNR_FLOOR


def test_decoding_twice_gives_identical_bytes(nrff_clip):
    _, stream = nrff_clip
    first = open_bitstream(stream).frame(5)
    second = open_bitstream(stream).frame(5)
    assert first.tobytes() == second.tobytes()


def test_a_frame_range_decodes_alone(nrff_clip):
    _, stream = nrff_clip
    decoder = open_bitstream(stream)
    partial = list(decoder.frames(3, 6))
    assert [i for i, _ in partial] == [3, 4, 5]
    whole = dict(open_bitstream(stream).frames(0, len(nrff_clip[0])))
    for index, image in partial:  # a range decodes to the very frames a full decode makes
        assert image.tobytes() == whole[index].tobytes()
    assert container.parse(stream).sections.keys() == {"CONF", "KEYF", "WGTS"}


def test_fewer_weight_bits_buy_a_wider_network_in_the_same_budget(nrff_clip):
    frames, _ = nrff_clip
    files = {
        bits: fit(
            frames,
            Fraction(30),
            FitOptions(bpp=0.6, steps=20, minutes=None, gop=8, keyframe_share=0.6, weight_bits=bits, residual_share=0),
        )
        for bits in (8, 5)
    }
    decoders = {bits: open_bitstream(data) for bits, data in files.items()}
    assert container.parse(files[5]).sections["WGTS"][0] == 5  # the file says how many bits it stores
    assert decoders[5].config["width"] > decoders[8].config["width"]
    assert decoders[5].frame(3).shape == (64, 80, 3)
    with pytest.raises(ValueError, match="weight_bits"):
        fit(frames, Fraction(30), FitOptions(steps=1, minutes=None, weight_bits=7, residual_share=0))


def test_the_size_model_matches_the_file(nrff_clip):
    """Rate control chooses the width with ``file_bits``: everything but the keyframes (container,
    CONF, per-row quantiser tables, the range coder's tables, the coded weights) within 5% of the file."""
    _, stream = nrff_clip
    sections = container.parse(stream).sections
    config = open_bitstream(stream).config
    expected = file_bits(config["width"], config["depth"], config["frequencies"], 8, len(sections["CONF"])) / 8
    actual = len(stream) - len(sections["KEYF"])
    assert abs(actual - expected) <= 0.05 * actual


def test_the_rate_chooses_the_gop_and_the_keyframe_share_unless_given(nrff_clip):
    frames, _ = nrff_clip
    assert split(FitOptions(bpp=0.025)) == (10, 0.6, 0.0)
    assert split(FitOptions(bpp=0.05)) == (5, 0.75, 0.0)  # higher rates: shorter GOPs, more to keyframes
    assert split(FitOptions(bpp=0.1)) == (3, 0.75, 0.0)
    assert split(FitOptions(bpp=0.2)) == (2, 0.85, 0.0)
    assert split(FitOptions(bpp=0.2, gop=8, keyframe_share=0.5, residual_share=0.25)) == (8, 0.5, 0.25)
    assert split(FitOptions(bpp=0.2, residual_share=0.3))[2] == 0.3
    stream = fit(frames, Fraction(30), FitOptions(bpp=0.6, steps=20, minutes=None))
    decoder = open_bitstream(stream)
    assert decoder.config["gop"] == 2  # the file records the GOP it was made with, and decodes by it
    assert len(decoder.keys) == len(keyframe_indices(len(frames), 2)) == 8
    assert 8 * len(stream) <= 1.03 * 0.6 * frames[..., 0].size


def test_the_latent_residual_decodes_within_the_budget_and_improves_the_prediction(nrff_residual_clip):
    frames, stream = nrff_residual_clip
    sections = container.parse(stream).sections
    assert sections.keys() == {"CONF", "KEYF", "WGTS", "RESD"} and stream[4] == container.VERSION == 4
    assert 0.85 * 1.5 <= 8 * len(stream) / frames[..., 0].size <= 1.03 * 1.5
    assert 0.2 * len(stream) <= len(sections["RESD"]) <= 0.45 * len(stream)  # about the 40% it was given
    decoder = open_bitstream(stream)
    assert decoder.config["residual"]["levels"] == residual.LEVELS
    truth = frames.astype(np.float32) / 255

    def score():
        return np.mean(
            [ops.psnr(torch.from_numpy(decoder.frame(i)), torch.from_numpy(truth[i])) for i in range(len(frames))]
        )

    with_residual = score()
    decoder.residual = None  # the flow prediction alone
    assert with_residual > PSNR_FLOOR and with_residual > score() + 0.5


def test_a_residual_frame_decodes_the_same_alone_and_in_a_range(nrff_residual_clip):
    _, stream = nrff_residual_clip
    whole = dict(open_bitstream(stream).frames())
    alone = open_bitstream(stream).frame(9)
    assert alone.tobytes() == whole[9].tobytes()
    assert alone.shape == (64, 80, 3) and 0 <= alone.min() and alone.max() <= 1


def test_the_residual_rendered_in_row_chunks_equals_the_whole_frame():
    torch.manual_seed(0)
    synthesis = residual.Synthesis(3, 8)
    for p in synthesis.parameters():
        torch.nn.init.normal_(p, std=0.3)
    latents = [torch.randn(1, 1, h, w) for h, w in residual.grid_sizes(37, 29, 3)]
    prediction = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        whole = residual.residual_rows(synthesis, latents, prediction, 0, 37)
        chunks = torch.cat(
            [residual.residual_rows(synthesis, latents, prediction, s, min(37, s + 8)) for s in range(0, 37, 8)], 2
        )
    assert whole.shape == (1, 3, 37, 29)
    torch.testing.assert_close(chunks, whole, atol=1e-5, rtol=0)


def test_upsampling_is_bilinear_with_half_pixel_centres():
    grid = torch.randn(2, 1, 9, 11)
    ours = residual.upsample(grid, 18, 22, torch.arange(18))
    torch.testing.assert_close(ours, F.interpolate(grid, size=(18, 22), mode="bilinear", align_corners=False))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p[:-4],  # a word short
        lambda p: p[:10],  # truncated inside the weights
        lambda p: struct.pack("<I", 10**6) + p[4:],  # weights said to pass the section
        lambda p: p + bytes(4),  # trailing bytes the word counts do not account for
    ],
)
def test_a_damaged_residual_section_with_a_valid_crc_is_refused(nrff_residual_clip, damage):
    stream = container.parse(nrff_residual_clip[1])
    stream.sections["RESD"] = damage(stream.sections["RESD"])
    with pytest.raises(BitstreamError):
        open_bitstream(container.write(stream))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_residual_section_changed_under_a_valid_crc_is_refused_or_decodes(nrff_residual_clip, data):
    """Any byte of RESD changed (its tables, word counts, weights or code words) and the CRC made to
    match: BitstreamError, or frames of the right shape with finite values; never another error."""
    stream = container.parse(nrff_residual_clip[1])
    payload = bytearray(stream.sections["RESD"])
    position = data.draw(st.integers(0, len(payload) - 1))
    payload[position] = data.draw(st.integers(0, 255).filter(lambda v: v != payload[position]))
    stream.sections["RESD"] = bytes(payload)
    try:
        decoder = open_bitstream(container.write(stream))
        frame = decoder.frame(data.draw(st.integers(0, decoder.header.frames - 1)))
    except BitstreamError:
        return
    assert frame.shape == (64, 80, 3) and np.isfinite(frame).all()


def test_a_residual_declared_in_conf_without_its_section_is_refused(nrff_residual_clip):
    stream = container.parse(nrff_residual_clip[1])
    del stream.sections["RESD"]
    with pytest.raises(BitstreamError, match="RESD"):
        open_bitstream(container.write(stream))


def test_the_residual_reports_progress_like_the_flow_network_and_needs_steps(nrff_clip):
    frames = nrff_clip[0]
    reports = []
    options = FitOptions(bpp=1.5, steps=20, minutes=None, gop=8, residual_share=0.4, residual_steps=100)
    stream = fit(frames, Fraction(30), options, progress=reports.append)
    assert "RESD" in container.parse(stream).sections
    assert all({"step", "steps", "loss", "psnr"} <= r.keys() for r in reports)  # what `vinr encode` shows
    assert [r["step"] for r in reports if r.get("stage") == "residual"][-1] == 100
    few = fit(frames, Fraction(30), FitOptions(bpp=1.5, steps=20, minutes=None, gop=8, residual_share=0.4))
    assert "RESD" not in container.parse(few).sections  # 4 residual steps could not spend its bits


def test_the_residual_budget_does_not_touch_the_random_generator():
    """Sizing the residual must not change the flow network's initialisation (files below 0.15 bpp
    are the same as before the residual existed)."""
    assert residual.synthesis_parameters(7, 16) == sum(p.numel() for p in residual.Synthesis(7, 16).parameters())
    torch.manual_seed(3)
    residual.overhead_bits(residual.ResidualOptions(bits=1e5), 60)
    after = torch.rand(1)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(1))


def test_a_residual_too_small_to_fit_leaves_no_trace_in_the_file(nrff_clip):
    """At 0.2 bpp the rule gives the residual 30%, too few bits on this clip: the file must be the one
    made with no residual asked for."""
    frames = nrff_clip[0]
    by_rule = fit(frames, Fraction(30), FitOptions(bpp=0.2, steps=20, minutes=None))
    without = fit(frames, Fraction(30), FitOptions(bpp=0.2, steps=20, minutes=None, residual_share=0))
    assert "RESD" not in container.parse(by_rule).sections
    assert by_rule == without
