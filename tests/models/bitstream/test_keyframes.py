"""Keyframe payloads: inter-coded by default (one intra frame, the rest predicted), intra on request."""

from __future__ import annotations

import numpy as np
import pytest

from models.bitstream import keyframes
from models.evaluation import mean_psnr
from tests.media import texture_frames


@pytest.fixture(scope="module")
def keys() -> list[np.ndarray]:
    """Six keyframes of a texture that moves a few pixels between them (as GOP 10 spaces them)."""
    return list(texture_frames(6, 72, 96, seed=4, velocity=(3.0, 1.5)))


@pytest.mark.parametrize("codec", ["av1", "hevc"])
def test_predicted_keyframes_cost_fewer_bytes_for_the_same_quality(keys, codec):
    """At one CRF the predicted payload is smaller and not worse than coding each keyframe alone, and
    both decode with the same reader to every frame at its size."""
    payloads = {inter: keyframes.encode(keys, codec, 30, inter=inter) for inter in (True, False)}
    decoded = {inter: np.stack(keyframes.decode(p, 96, 72, len(keys))) for inter, p in payloads.items()}
    for frames in decoded.values():
        assert frames.shape == (6, 72, 96, 3)
    quality = {inter: mean_psnr(frames, np.stack(keys)) for inter, frames in decoded.items()}
    assert len(payloads[True]) < 0.8 * len(payloads[False])
    assert quality[True] > quality[False] - 0.3


def test_a_payload_declaring_fewer_frames_than_it_holds_is_refused(keys):
    payload = bytearray(keyframes.encode(keys, "av1", 40))
    payload[2:4] = (5).to_bytes(2, "little")
    with pytest.raises(keyframes.BitstreamError, match="count"):
        keyframes.decode(bytes(payload), 96, 72, 10)
