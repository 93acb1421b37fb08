"""D-NeRV: fit a tiny collection, decode one video and one range alone, quality, determinism, safety."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import ops
from models.dnerv.decode import open_library
from models.probe import UnknownVideoError
from tests.corruption import assert_corruption_refused, assert_truncations_refused

PSNR_FLOOR = 15.0
"""dB after 80 fitting steps on the tiny collection (about 19 dB is typical); keyframes are exact-ish."""


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
