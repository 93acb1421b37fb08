"""Test-time adaptation's mechanics (``models.videoinr.adapt``): the task a video gives, its windows and
their held-out split, the budget and the guard."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from models import registry
from models.videoinr import adapt
from tests.media import texture_frames


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return registry.load(tiny_model_path)


@pytest.fixture(scope="module")
def windows():
    frames = list(texture_frames(40, 48, 64, seed=4, velocity=(2.0, 1.0)))
    task = adapt.adapt_task(48, 64, 2.0, 2)
    return task, adapt.sample_windows(frames, set(), task, 12)


def test_the_task_follows_the_job_and_the_frames():
    assert adapt.adapt_task(48, 64, 2.0, 2) == adapt.AdaptTask(2.0, 2, 48, 48)
    largest = adapt.MAX_SIDE  # windows and crops bound memory and step time
    assert adapt.adapt_task(480, 640, 3.5, 3.5) == adapt.AdaptTask(3.5, 4, adapt.MAX_CROP, largest)
    with pytest.raises(adapt.AdaptError, match=r"too small to learn a 4x upsample from \(the shorter side needs 64"):
        adapt.adapt_task(48, 64, 4.0, 4)  # the job's own scale or nothing: a smaller one does not transfer
    for scale, time_factor in ((2.0, 1), (2.0, 4), (1.0, 2), (1.2, 1)):  # the job's in-between times only
        with pytest.raises(adapt.AdaptError, match=f"same factor in space and time.*{scale:g}x in space and "):
            adapt.adapt_task(480, 640, scale, time_factor)


def test_windows_are_spread_over_the_video_and_never_cross_a_cut():
    frames = [np.full((40, 40, 3), i, np.uint8) for i in range(30)]  # frame i is all i
    task = adapt.AdaptTask(2.0, 2, 32, 32)
    found = adapt.sample_windows(frames, {10, 20}, task, 6)
    firsts = sorted(int(w[0, 0, 0, 0]) for w in found.clips)
    assert len(found) == 6 and firsts[0] == 0 and firsts[-1] == 27  # from the start to the end
    assert list(found.starts) == firsts
    for window in found.clips:
        values = [int(frame[0, 0, 0]) for frame in window]
        assert values == list(range(values[0], values[0] + 3))  # consecutive frames
        assert not any(values[0] < cut <= values[-1] for cut in (10, 20)), values
    assert found.clips.shape == (6, 3, 32, 32, 3)
    with pytest.raises(adapt.AdaptError, match="no 3 frames in a row without a cut"):
        adapt.sample_windows(frames[:4], {1, 3}, task, 2)


def test_held_out_windows_share_no_frame_with_the_ones_learned_from():
    frames = [np.full((32, 32, 3), i, np.uint8) for i in range(60)]
    found = adapt.sample_windows(frames, set(), adapt.AdaptTask(2.0, 2, 32, 32), 40)
    held, learn = found.split()
    held_frames = {int(v) for v in held[:, :, 0, 0, 0].ravel()}
    learn_frames = {int(v) for v in learn[:, :, 0, 0, 0].ravel()}
    assert 1 <= len(held) <= adapt.MAX_HELD and len(learn) >= adapt.MIN_LEARN
    assert not held_frames & learn_frames, sorted(held_frames & learn_frames)
    short = adapt.sample_windows(frames[:8], set(), adapt.AdaptTask(2.0, 2, 32, 32), 40)
    with pytest.raises(adapt.AdaptError, match="too short to learn from"):
        short.split()


def test_the_budget_holds_and_the_served_model_is_untouched(model, windows):
    task, found = windows
    before = {name: value.clone() for name, value in model.state_dict().items()}
    started = time.monotonic()
    result = adapt.adapt(model, found, task, 3.0, force=True)
    took = time.monotonic() - started
    assert result.steps > 0 and took < 3.0 + 1.0, (took, result.steps)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert any(not torch.equal(before[name], value) for name, value in result.state.items())
    summary = result.summary()
    assert summary["used"] and summary["steps"] == result.steps and summary["gap"] == 2


def test_the_guard_refuses_a_bad_adaptation(model, windows):
    """A learning rate 10,000 times too large wrecks the copy; the held-out windows catch it."""
    task, found = windows
    result = adapt.adapt(model, found, task, 1.5, learning_rate=1.0)
    assert not result.used and result.state is None and result.gain_db < -1, result.summary()
    assert adapt.adapt(model, found, task, 1.0, learning_rate=1.0, force=True).used
    with pytest.raises(adapt.AdaptError, match="fewer than 2 windows"):
        adapt.adapt(model, adapt.Windows(found.clips[:1], found.starts[:1]), task, 1.0)


def test_the_rate_warms_up_then_decays_over_the_budget():
    rates = [adapt.rate_at(i / 100) for i in range(101)]
    peak = round(adapt.WARMUP * 100)
    assert rates[0] == 0 and rates[peak] == pytest.approx(1) and rates[-1] == pytest.approx(0, abs=1e-9)
    assert all(a < b for a, b in zip(rates[:peak], rates[1 : peak + 1]))  # warm-up: Adam's first steps are full-size
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :]))
