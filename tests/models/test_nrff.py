"""NRFF: encode a tiny generated clip, decode it, check quality, header and determinism."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from models import ops
from models.bitstream import container
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
            FitOptions(bpp=0.6, steps=20, minutes=None, gop=8, keyframe_share=0.6, weight_bits=bits),
        )
        for bits in (8, 5)
    }
    decoders = {bits: open_bitstream(data) for bits, data in files.items()}
    assert container.parse(files[5]).sections["WGTS"][0] == 5  # the file says how many bits it stores
    assert decoders[5].config["width"] > decoders[8].config["width"]
    assert decoders[5].frame(3).shape == (64, 80, 3)
    with pytest.raises(ValueError, match="weight_bits"):
        fit(frames, Fraction(30), FitOptions(steps=1, minutes=None, weight_bits=7))


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
    assert split(FitOptions(bpp=0.05)) == (30, 0.6)
    assert split(FitOptions(bpp=0.2)) == (10, 0.6)  # higher rates: shorter GOPs
    assert split(FitOptions(bpp=0.2, gop=8, keyframe_share=0.5)) == (8, 0.5)
    stream = fit(frames, Fraction(30), FitOptions(bpp=0.6, steps=20, minutes=None))
    decoder = open_bitstream(stream)
    assert decoder.config["gop"] == 10  # the file records the GOP it was made with, and decodes by it
    assert len(decoder.keys) == len(keyframe_indices(len(frames), 10)) == 2
    assert 8 * len(stream) <= 1.03 * 0.6 * frames[..., 0].size
