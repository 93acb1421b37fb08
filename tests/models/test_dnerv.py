"""D-NeRV: fit a tiny collection, decode one video and one range alone, quality, determinism, safety."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import ops
from models.bitstream import container
from models.bitstream.container import BitstreamError
from models.dnerv.base import BASE_DIR, DEFAULT_BASE, file_hash, load_base
from models.dnerv.decode import open_library
from models.dnerv.fit import DNeRVOptions, Video, fit
from models.dnerv.network import between_frames, keyframe_indices, pack_plan
from models.evaluation import mean_psnr
from models.probe import UnknownVideoError
from tests.corruption import assert_corruption_refused, assert_truncations_refused
from tests.media import texture_frames

PSNR_FLOOR = 15.0
"""dB after 80 fitting steps on the tiny collection; keyframes are exact-ish."""


def test_one_video_decodes_alone_with_quality(dnerv_library):
    videos, data = dnerv_library
    library = open_library(data)
    assert [v["name"] for v in library.videos] == ["clip0", "clip1", "clip2"]
    index = library.find("clip1")
    decoded = np.stack([image for _, image in library.frames(index)])
    assert decoded.shape == (12, 64, 64, 3)
    assert {video for video, _ in library.decoded_clips} == {1}  # the other videos were not touched
    truth = videos[1].frames.astype(np.float32) / 255
    assert np.mean([ops.psnr(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(decoded, truth)]) > PSNR_FLOOR


def test_a_library_with_a_base_stores_only_the_weight_difference(dnerv_library):
    videos, data = dnerv_library
    stream = container.parse(data)
    config = json.loads(stream.sections["CONF"])
    assert config["base"]["name"] == DEFAULT_BASE and "WGTS" not in stream.sections
    assert config["base"]["sha256"] == file_hash(BASE_DIR / f"{DEFAULT_BASE}.safetensors")
    weights = sum(p.numel() for p in load_base(DEFAULT_BASE).parameters())
    assert len(stream.sections["DLTA"]) < weights  # under 8 bits per weight: most differences round to 0
    fitted = open_library(data).model.state_dict()
    base = load_base(DEFAULT_BASE).state_dict()
    assert any(not torch.equal(fitted[k], base[k]) for k in base)  # and it did fine-tune


def test_videos_of_different_sizes_share_a_library():
    videos = [
        Video("wide", texture_frames(9, 32, 48, seed=1), Fraction(25)),
        Video("tall", texture_frames(9, 34, 32, seed=2, velocity=(0.5, 1.0)), Fraction(30)),
    ]
    library = open_library(fit(videos, DNeRVOptions(bpp=1.0, steps=10, minutes=None)))
    assert (library.header.width, library.header.height) == (48, 34)
    for index, video in enumerate(videos):
        decoded = np.stack([image for _, image in library.frames(index)])
        assert decoded.shape == video.frames.shape and library.size(index) == video.frames.shape[2:0:-1]
        truth = video.frames.astype(np.float32) / 255
        assert np.mean([ops.psnr(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(decoded, truth)]) > 15


def test_a_self_contained_library_needs_no_base():
    videos = [Video("one", texture_frames(9, 32, 32, seed=3), Fraction(25))]
    data = fit(videos, DNeRVOptions(bpp=2.0, steps=10, minutes=None, base=None))
    stream = container.parse(data)
    assert "base" not in json.loads(stream.sections["CONF"]) and "WGTS" in stream.sections
    assert len(list(open_library(data).frames(0))) == 9


def test_keyframes_closer_than_the_network_clip():
    """Keyframes 2 frames apart: the network decodes 8 frames (of four clips) per call; a range runs
    only the calls it needs, and the keyframes stand where ``gop`` puts them, shown as decoded."""
    videos = [Video("near", texture_frames(9, 32, 32, seed=5, velocity=(2.0, 1.0)), Fraction(25))]
    data = fit(videos, DNeRVOptions(bpp=2.0, steps=30, minutes=None, gop=2))
    library = open_library(data)
    assert library.config["format"] == 5 and library.config["gop"] == 2 and library.config["preset"]["clip"] == 8
    assert "residual" not in library.config  # 6 residual steps could not settle its rate: none is fitted
    assert library.keyframes(0).shape[0] == len(keyframe_indices(9, 2)) == 5
    partial = list(library.frames(0, 6, 9))
    assert [i for i, _ in partial] == [6, 7, 8] and library.decoded_clips == [(0, 0), (0, 8)]
    decoded = np.stack([image for _, image in open_library(data).frames(0)])
    truth = videos[0].frames.astype(np.float32) / 255
    assert decoded.shape == truth.shape
    assert np.mean([ops.psnr(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(decoded, truth)]) > PSNR_FLOOR
    keys = library.keyframes(0)[:, :, :32, :32].permute(0, 2, 3, 1).numpy()
    for k, frame in enumerate(keyframe_indices(9, 2)):  # CONF format 4 on: keyframes as decoded
        np.testing.assert_array_equal(decoded[frame], keys[k])
    with pytest.raises(ValueError, match="gop must be 1 to"):
        fit(videos, DNeRVOptions(bpp=2.0, steps=1, minutes=None, gop=9))


def test_every_frame_a_keyframe():
    """Keyframes 1 apart: nothing lies between keyframes, so nothing is fitted and the network never
    runs; every frame is its keyframe as decoded."""
    videos = [Video("keys", texture_frames(5, 32, 32, seed=6), Fraction(25))]
    library = open_library(fit(videos, DNeRVOptions(bpp=2.0, steps=30, minutes=None, gop=1)))
    assert library.config["steps"] == 0 and library.config["gop"] == 1
    decoded = np.stack([image for _, image in library.frames(0)])
    np.testing.assert_array_equal(decoded, library.keyframes(0)[:, :, :32, :32].permute(0, 2, 3, 1).numpy())


def test_packs_of_short_clips_and_of_whole_clips():
    """With ``gop == clip`` a pack is one clip as libraries before ``gop`` laid them out; with a
    shorter ``gop`` one pack holds several clips, each frame between its own two keyframes."""
    whole = pack_plan(16, 8, 8)
    assert [(p.start, p.stop, p.key_lo, p.key_hi) for p in whole] == [(0, 8, 0, 2), (8, 16, 1, 3)]
    assert whole[0].first == (0,) * 8 and whole[0].last == (1,) * 8
    assert whole[0].times == tuple(j / 8 for j in range(8)) and whole[1].times == tuple(j / 7 for j in range(8))
    short = pack_plan(9, 2, 8)
    assert [(p.start, p.stop, p.key_lo, p.key_hi) for p in short] == [(0, 8, 0, 5), (8, 9, 4, 5)]
    assert short[0].first == (0, 0, 1, 1, 2, 2, 3, 3) and short[0].last == (1, 1, 2, 2, 3, 3, 4, 4)
    assert short[0].times == (0, 0.5) * 4 and short[1].times == (0.0,) * 8  # the last frame is a keyframe
    assert short[0].between == (False, True) * 4 and not any(short[1].between)
    assert whole[0].between == (False,) + (True,) * 7 and whole[1].between == (False,) + (True,) * 6 + (False,)


def with_conf(data: bytes, change) -> bytes:
    """The library re-written with its CONF changed by ``change(config)`` (CRCs valid)."""
    stream = container.parse(data)
    config = json.loads(stream.sections["CONF"])
    change(config)
    stream.sections["CONF"] = json.dumps(config).encode()
    return container.write(stream)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda c: c["base"].update(sha256="0" * 64), "SHA-256 differs"),
        (lambda c: c["base"].update(name="dnerv-xl"), "ships no base decoder"),
        (lambda c: c["base"].update(name="../../etc/passwd"), "not a base decoder name"),
        (lambda c: c["videos"][0].update(width=65), "width=65 outside"),
        (lambda c: c.update(format=6), "unknown CONF format"),
        (lambda c: c.update(format=4), "format 4 has no residual"),
        (lambda c: c["residual"].update(levels=0), "residual levels=0 outside"),
        (lambda c: c["residual"].update(coding="zip"), "residual coding 'zip'"),
        (lambda c: c.update(residual=[]), "residual is not an object"),
        (lambda c: c.update(gop=9), "gop=9 outside"),
        (lambda c: c.update(gop=0), "gop=0 outside"),
        (lambda c: c.pop("gop"), "gop=None outside"),
    ],
)
def test_a_bad_base_or_index_is_refused(dnerv_library, change, words):
    with pytest.raises(BitstreamError, match=words):
        open_library(with_conf(dnerv_library[1], change))


def as_bytes(frames) -> np.ndarray:
    return np.stack([(image * 255 + 0.5).astype(np.uint8) for _, image in frames])


def test_a_latent_residual_corrects_the_frames_between_keyframes(dnerv_library):
    """CONF format 5: the residual (RESD) is fitted to what the stored decoder leaves between keyframes
    (on these tiny clips it added 0.34, 0.69 and 1.27 dB).
    It leaves the keyframes as decoded, lifts every video's frames between them, and the library stays
    within its bits."""
    videos, data = dnerv_library
    library = open_library(data)
    assert library.config["format"] == 5 and library.config["residual"]["steps"] == 100
    assert "RESD" in container.parse(data).sections
    assert 8 * len(data) <= 1.0 * sum(v.frames[..., 0].size for v in videos)
    plain = open_library(data)
    plain.residual = None  # the same library decoded without its residual
    gop = library.config["gop"]
    for index, video in enumerate(videos):
        corrected, predicted = as_bytes(library.frames(index)), as_bytes(plain.frames(index))
        keys, between = keyframe_indices(len(video.frames), gop), between_frames(len(video.frames), gop)
        assert len(keys) + len(between) == len(video.frames)
        np.testing.assert_array_equal(corrected[keys], predicted[keys])
        truth = video.frames[between]
        gain = mean_psnr(corrected[between], truth) - mean_psnr(predicted[between], truth)
        assert gain > 0.2, f"video {index}: the residual added {gain:.2f} dB"


def test_a_residual_without_its_section_or_share_is_refused(dnerv_library):
    stream = container.parse(dnerv_library[1])
    del stream.sections["RESD"]
    with pytest.raises(BitstreamError, match="no RESD section"):
        open_library(container.write(stream))
    videos = dnerv_library[0][:1]
    with pytest.raises(ValueError, match="residual_share must be in"):
        fit(videos, DNeRVOptions(bpp=1.0, steps=1, minutes=None, residual_share=1.0))


def test_a_frame_range_runs_only_its_clips(dnerv_library):
    _, data = dnerv_library
    library = open_library(data)
    partial = list(library.frames(2, 9, 11))
    assert [i for i, _ in partial] == [9, 10] and library.decoded_clips == [(2, 8)]
    whole = dict(open_library(data).frames(2, 0, 12))
    for index, image in partial:  # a range decodes to the very frames a full decode makes
        assert image.tobytes() == whole[index].tobytes()


def test_repeated_decoding_gives_identical_bytes(dnerv_library):
    _, data = dnerv_library
    first = [image.tobytes() for _, image in open_library(data).frames(0, 0, 4)]
    second = [image.tobytes() for _, image in open_library(data).frames(0, 0, 4)]
    assert first == second


def test_unknown_video_is_a_clear_error(dnerv_library):
    with pytest.raises(UnknownVideoError, match="no video"):
        open_library(dnerv_library[1]).find("nope")


def test_truncations_give_the_typed_error(dnerv_library):
    assert_truncations_refused(open_library, dnerv_library[1])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_single_byte_corruptions_give_the_typed_error(dnerv_library, data):
    assert_corruption_refused(open_library, dnerv_library[1], data)
