"""Test-time adaptation, a candidate under measurement: VideoINR fine-tuned on the video it is about to
upsample, within a time budget. Nothing in ``vinr upsample`` or the service uses it; it is measured by
``python -m models.videoinr.evaluate --adapt SECONDS``. On the held-out carphone clip every variant tried
so far raised the PSNR of its own held-out windows and lowered the in-between frames' (CHANGELOG.md,
2026-12-07), so the guard below does not yet protect what it should.

A video carries its own training data: its frames are the high-resolution, high-frame-rate truth of a
copy of itself made smaller and sparser. Windows of the input (``sample_windows``: spread over its whole
length, never across a scene cut, cropped to a bounded square) become examples of the job's own task at a
smaller scale (``AdaptTask``): the two ends of a window, bicubically downscaled by ``scale`` as in
training, go in; the frames between them are the targets. A copy of the served weights is trained on
them (``adapt``) until the budget is spent, pulled toward the served weights. Some windows are held out;
the adapted weights are kept only when they score better than the served ones on those (the guard).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models import ops
from models.videoinr import train

MIN_LOW = 16
"""Smallest low-res side of an adaptation example, pixels (the motion pyramid's coarsest level needs it)."""
MAX_CROP = 96
"""Largest high-res crop side of an adaptation example: bounds memory and step time whatever the video."""
HOLD_OUT = 5
"""One window in this many is held out for the guard (at least one)."""
MAX_HELD = 4
"""Most held-out windows (their checks come out of the budget)."""
MIN_GAIN = 0.0
"""Held-out gain (dB) the adapted weights must beat to be used."""
LEARNING_RATE = 1e-4
"""Adam's peak learning rate (a tenth of training's: the served weights are the start, not noise)."""
PULL = 1e-2
"""Weight of the L2 pull toward the served weights (times the sum of squared differences)."""
BATCH = 8
"""Examples per step."""
POINTS = 1024
"""Target pixels per example per step."""
WINDOWS = 48
"""Windows taken from a video, spread over its whole length."""


class AdaptError(ValueError):
    """The video cannot be adapted to (too small, too short)."""


@dataclass(frozen=True)
class AdaptTask:
    """The self-supervised task made from a video for an upsample by ``scale`` in space and ``time_factor``
    in time: inputs downscaled by ``scale`` (the job's where the frames are large enough, smaller
    otherwise), ``gap`` input frames apart, the frames between as targets; crops of ``crop`` pixels."""

    scale: float
    gap: int
    crop: int

    @property
    def low(self) -> int:
        """The low-res side of an example."""
        return max(1, round(self.crop / self.scale))

    @property
    def length(self) -> int:
        """Frames in a window."""
        return self.gap + 1


def adapt_task(height: int, width: int, scale: float, time_factor: float) -> AdaptTask:
    """The task for a video of ``height`` x ``width`` upsampled ``scale`` x and ``time_factor`` x.

    The gap matches the job's motion: ``gap`` input frames downscaled ``scale`` times move about as far as
    one input pair at the input's size, so ``gap`` is ``scale`` rounded (at least 2, at most 8)."""
    crop = min(height, width, MAX_CROP)
    most = crop / MIN_LOW
    if most < 1.5:
        raise AdaptError(f"adapt: frames of {width}x{height} are too small to learn from (need {MIN_LOW * 1.5:g} px)")
    chosen = min(max(scale, 1.5), most)
    gap = min(8, max(2, round(chosen)))
    if time_factor < 1.5:  # a job that adds no frames still learns the space part from pairs one gap apart
        gap = 2
    return AdaptTask(chosen, gap, crop)


def sample_windows(frames: list[np.ndarray], cuts: set[int], task: AdaptTask, count: int, seed: int = 0) -> np.ndarray:
    """``count`` windows (or as many as fit) of ``task.length`` consecutive frames spread evenly over
    ``frames`` (uint8 ``(H, W, 3)``), none across a cut (``i`` in ``cuts``: a cut between frames i-1 and
    i), each cropped to a ``task.crop`` square at a random place; ``(N, length, crop, crop, 3)`` uint8."""
    starts = [
        s for s in range(len(frames) - task.length + 1) if not any(c in cuts for c in range(s + 1, s + task.length))
    ]
    if not starts:
        raise AdaptError(f"adapt: the video has no {task.length} frames in a row without a cut")
    picks = sorted({starts[round(i * (len(starts) - 1) / max(1, count - 1))] for i in range(count)})
    rng = np.random.default_rng(seed)
    windows = []
    for start in picks:
        height, width = frames[start].shape[:2]
        y = int(rng.integers(0, height - task.crop + 1))
        x = int(rng.integers(0, width - task.crop + 1))
        clip = [frame[y : y + task.crop, x : x + task.crop] for frame in frames[start : start + task.length]]
        windows.append(np.stack(clip))
    return np.stack(windows)


@dataclass
class AdaptResult:
    """How an adaptation went: the weights to render with (None: the served ones), the held-out scores."""

    state: dict[str, torch.Tensor] | None
    served_db: float
    adapted_db: float
    steps: int
    seconds: float
    task: AdaptTask

    @property
    def gain_db(self) -> float:
        return self.adapted_db - self.served_db

    @property
    def used(self) -> bool:
        return self.state is not None

    def summary(self) -> dict:
        """Plain data for a job's record and the CLI's report."""
        return {
            "used": self.used,
            "gain_db": round(self.gain_db, 3),
            "served_db": round(self.served_db, 3),
            "adapted_db": round(self.adapted_db, 3),
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "scale": round(self.task.scale, 3),
            "gap": self.task.gap,
            "crop": self.task.crop,
        }


def held_out_db(model, windows: np.ndarray, task: AdaptTask, device) -> float:
    """Mean RGB PSNR of the in-between frames of ``windows`` rebuilt from their ends downscaled by the task."""
    return train.validate(model, windows, device, scale=task.scale, gap=task.gap)["val_psnr"]


def adapt(
    model: torch.nn.Module,
    windows: np.ndarray,
    task: AdaptTask,
    seconds: float,
    progress: Callable[[float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    seed: int = 0,
    learning_rate: float = LEARNING_RATE,
    pull: float = PULL,
    force: bool = False,
) -> AdaptResult:
    """Fine-tune a copy of ``model`` on ``windows`` for about ``seconds`` (the held-out checks included);
    ``progress(fraction, steps)`` is called after each step. The copy's weights come back only when it
    beats ``model`` on the held-out windows, or with ``force`` (tests). ``model`` itself is not changed."""
    started = time.monotonic()
    device = next(model.parameters()).device
    if len(windows) < 2:
        raise AdaptError("adapt: the video gives fewer than 2 windows (one to learn from, one to check)")
    held = windows[::HOLD_OUT][:MAX_HELD]
    learn = np.delete(windows, np.arange(0, len(windows), HOLD_OUT), axis=0)
    checking = time.monotonic()
    served = held_out_db(model, held, task, device)
    check_time = time.monotonic() - checking
    tuned = copy.deepcopy(model).train()
    trained = list(tuned.parameters())
    anchors = [p.detach().clone() for p in trained]
    optimizer = torch.optim.Adam(trained, lr=learning_rate)
    rng = np.random.default_rng(seed)
    end = started + max(0.0, seconds - 1.2 * check_time)  # the adapted weights' check fits in the budget
    steps = 0
    while time.monotonic() < end and not (should_stop and should_stop()):
        progress_now = (time.monotonic() - started) / max(seconds, 1e-9)
        for group in optimizer.param_groups:  # cosine decay over the budget's time, not its (unknown) steps
            group["lr"] = learning_rate * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_now)))
        batch = train.sample_batch(
            learn, rng, BATCH, task.low, min(POINTS, task.crop * task.crop), (task.scale, task.scale), (task.gap,)
        )
        pred = tuned(batch.image0.to(device), batch.image1.to(device), batch.points.to(device),
                     batch.t.to(device), batch.cell.to(device))  # fmt: skip
        loss = ops.charbonnier(pred, batch.target.to(device))
        if pull:
            loss = loss + pull * sum(((p - a) ** 2).sum() for p, a in zip(trained, anchors))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        if progress:
            progress(min(1.0, (time.monotonic() - started) / max(seconds, 1e-9)), steps)
    tuned.eval()
    adapted = held_out_db(tuned, held, task, device)
    keep = force or adapted - served > MIN_GAIN
    state = {name: value.detach().clone() for name, value in tuned.state_dict().items()} if keep else None
    return AdaptResult(state, served, adapted, steps, time.monotonic() - started, task)
