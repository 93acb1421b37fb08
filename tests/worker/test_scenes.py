"""Scene-cut detection on generated frame sequences."""

from __future__ import annotations

import numpy as np

from tests.media import texture_frames
from worker.scenes import SceneCutDetector


def cuts(frames: np.ndarray) -> list[int]:
    detector = SceneCutDetector()
    return [i for i, f in enumerate(frames) if detector.push(f.astype(np.float32) / 255)]


def test_finds_hard_and_low_contrast_cuts():
    a, b = texture_frames(6, 48, 64, seed=1), 255 - texture_frames(6, 48, 64, seed=2)
    c = (texture_frames(6, 48, 64, seed=3) * 0.5 + 60).astype(np.uint8)
    assert cuts(np.concatenate([a, b, c])) == [6, 12]


def test_fast_steady_motion_and_fades_are_not_cuts():
    fast = texture_frames(12, 48, 64, seed=4, velocity=(6.0, 3.0))
    fade = (texture_frames(12, 48, 64, seed=5) * np.linspace(1, 0.3, 12)[:, None, None, None]).astype(np.uint8)
    assert cuts(fast) == [] and cuts(fade) == []
