"""Test-time adaptation: VideoINR fine-tuned on the video it is about to upsample, within a time budget
(``vinr upsample --adapt SECONDS``, ``adapt=`` on ``/upsample``; ``worker.adapting`` runs it for a job).

A video carries its own training data: its frames are the high-resolution, high-frame-rate truth of a
copy of itself made smaller and sparser. Windows of the input (``sample_windows``: spread over its whole
length, never across a scene cut, each a crop of at most ``MAX_SIDE`` pixels a side) become examples of
the job's own task (``AdaptTask``): the two ends of a window, bicubically downscaled by the job's scale
as in training, go in; the frames between them are the targets. Where the frames are too small to make
examples at the job's own scale the video is refused: examples at a smaller scale taught the model that
scale and lowered the job's (docs/quality.md). A copy of the served weights is trained on the examples
(``adapt``) until the budget is spent. Some windows are held out, and the windows that share a frame
with them are not learned from; the adapted weights are kept only when they score better than the
served ones on the held-out windows (the guard).
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
"""Largest high-res crop side of an adaptation example: bounds step time whatever the video."""
MAX_SIDE = 192
"""Largest side of a window (a crop of the frames where they are larger): bounds memory; each step crops its
examples anywhere inside."""
HOLD_OUT = 5
"""One window in this many is held out for the guard (at least one)."""
MAX_HELD = 4
"""Most held-out windows (their checks come out of the budget)."""
MIN_LEARN = 4
"""Fewest windows to learn from (apart from the held-out ones) for an adaptation to be tried."""
MIN_GAIN = 0.0
"""Held-out gain (dB) the adapted weights must beat to be used."""
LEARNING_RATE = 5e-4
"""Adam's peak learning rate, training's default (``train.py --lr``): 1e-4 learned too little of carphone
in 60 s (+0.04 dB at 2x/2x, CHANGELOG.md)."""
EMA = 0.99
"""Decay of the moving average of the adapted weights that is checked and kept (less in the first steps:
``(1 + n) / (10 + n)``), as ``train.py --ema`` smooths the last steps' noise."""
WARMUP = 0.1
"""Share of the budget over which the learning rate rises from 0 to ``LEARNING_RATE``."""
BATCH = 8
"""Examples per step."""
POINTS = 1024
"""Target pixels per example per step."""
PASSES = 80
"""Most passes over the windows learned from (steps x ``BATCH`` / windows): on carphone at 2x/2x the
in-between frames gained most after about 80 (60 s on 2 cores) and less after, down to -0.04 dB at 2x/4x
after 330, while the held-out windows kept rising (docs/quality.md)."""
WINDOWS = 48
"""Windows taken from a video, spread over its whole length."""


class AdaptError(ValueError):
    """The job cannot be adapted to (frames too small, too few, factors that differ)."""


@dataclass(frozen=True)
class AdaptTask:
    """The self-supervised task made from a video for an upsample by ``scale`` in space and as much in
    time: inputs downscaled by ``scale``, ``gap`` input frames apart, the frames between as targets;
    examples of ``crop`` pixels a side, cut from square windows of ``side`` pixels."""

    scale: float
    gap: int
    crop: int
    side: int

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
    one input pair at the input's size, so ``gap`` is ``scale`` rounded. Its in-between times
    (``1/gap, 2/gap, ...``) are the job's only where ``time_factor`` rounds to the same number, so other
    jobs are refused (on bigbuckbunny, 2x/4x and 4x/2x lost 0.1 to 0.3 dB while every held-out window
    gained, docs/quality.md), and so are factors under 2 (no frame between a pair) or over 8."""
    side = min(height, width, MAX_SIDE)
    crop = min(side, MAX_CROP)
    chosen = max(scale, 1.0)
    if crop / chosen < MIN_LOW:
        need = math.ceil(MIN_LOW * chosen)
        raise AdaptError(
            f"adapt: frames of {width}x{height} are too small to learn a {scale:g}x upsample from "
            f"(the shorter side needs {need} px)"
        )
    gap = round(chosen)
    if not 2 <= gap <= 8 or round(time_factor) != gap:
        raise AdaptError(
            f"adapt: it needs the same factor in space and time, 2 to 8 (such as 2x and 2x); this job has "
            f"{scale:g}x in space and {time_factor:g}x in time"
        )
    return AdaptTask(chosen, gap, crop, side)


@dataclass(frozen=True)
class Windows:
    """Windows of a video: ``clips`` ``(N, length, side, side, 3)`` uint8 and the index of each one's first
    frame in the video (``starts``), so held-out windows can be kept apart from the ones learned from."""

    clips: np.ndarray
    starts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.clips)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out windows (one in ``HOLD_OUT``, spread over the video, at most ``MAX_HELD``) and the
        windows to learn from: those that share no frame with a held-out one, so the guard scores frames
        the adaptation never saw."""
        length = self.clips.shape[1]
        held = list(range(0, len(self), HOLD_OUT))
        if len(held) > MAX_HELD:
            held = [held[round(i * (len(held) - 1) / (MAX_HELD - 1))] for i in range(MAX_HELD)]
        taken = [(self.starts[i], self.starts[i] + length) for i in held]
        learn = [
            i for i in range(len(self)) if i not in held and not any(a < self.starts[i] + length and self.starts[i] < b
                                                                  for a, b in taken)
        ]  # fmt: skip
        if len(learn) < MIN_LEARN:
            raise AdaptError(
                f"adapt: the video is too short to learn from: of its {len(self)} window(s) of {length} frames, "
                f"{len(learn)} share no frame with the ones held out to check the result (it needs {MIN_LEARN})"
            )
        return self.clips[held], self.clips[learn]


def sample_windows(frames: list[np.ndarray], cuts: set[int], task: AdaptTask, count: int, seed: int = 0) -> Windows:
    """``count`` windows (or as many as fit) of ``task.length`` consecutive frames spread evenly over
    ``frames`` (uint8 ``(H, W, 3)``), none across a cut (``i`` in ``cuts``: a cut between frames i-1 and
    i), each cropped to a ``task.side`` square at a random place."""
    starts = [
        s for s in range(len(frames) - task.length + 1) if not any(c in cuts for c in range(s + 1, s + task.length))
    ]
    if not starts:
        raise AdaptError(f"adapt: the video has no {task.length} frames in a row without a cut")
    picks = sorted({starts[round(i * (len(starts) - 1) / max(1, count - 1))] for i in range(count)})
    rng = np.random.default_rng(seed)
    clips = []
    for start in picks:
        (height, width), side = frames[start].shape[:2], task.side
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        clips.append(np.stack([frame[y : y + side, x : x + side] for frame in frames[start : start + task.length]]))
    return Windows(np.stack(clips), tuple(picks))


@dataclass
class AdaptResult:
    """How an adaptation went: the weights to render with (None: the served ones), the held-out scores, or
    why the video could not be adapted to (``refused``: nothing was trained)."""

    state: dict[str, torch.Tensor] | None
    served_db: float
    adapted_db: float
    steps: int
    seconds: float
    task: AdaptTask | None
    refused: str | None = None

    @classmethod
    def refusal(cls, reason: str, seconds: float = 0.0) -> AdaptResult:
        """The result of a video that gives no adaptation (too small, too short): the served weights."""
        return cls(None, math.nan, math.nan, 0, seconds, None, reason.removeprefix("adapt: "))

    @property
    def gain_db(self) -> float:
        return self.adapted_db - self.served_db

    @property
    def used(self) -> bool:
        return self.state is not None

    def summary(self) -> dict:
        """Plain data for a job's record and the CLI's report."""
        if self.task is None:
            return {"used": False, "refused": self.refused, "steps": 0, "seconds": round(self.seconds, 1)}
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


def rate_at(fraction: float) -> float:
    """The learning rate's factor ``fraction`` of the way through the budget: a linear warm-up over its first
    ``WARMUP`` (Adam's first steps move every weight by about the full rate), then a cosine decay; the
    fraction is of the budget's time or of its most steps, whichever is further (``adapt``)."""
    fraction = min(1.0, max(0.0, fraction))
    if fraction < WARMUP:
        return fraction / WARMUP
    return 0.5 * (1 + math.cos(math.pi * (fraction - WARMUP) / (1 - WARMUP)))


def held_out_db(model, windows: np.ndarray, task: AdaptTask, device) -> float:
    """Mean RGB PSNR of the in-between frames of ``windows`` rebuilt from their ends downscaled by the task."""
    return train.validate(model, windows, device, scale=task.scale, gap=task.gap)["val_psnr"]


def adapt(
    model: torch.nn.Module,
    windows: Windows,
    task: AdaptTask,
    seconds: float,
    progress: Callable[[float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    seed: int = 0,
    learning_rate: float = LEARNING_RATE,
    force: bool = False,
) -> AdaptResult:
    """Fine-tune a copy of ``model`` on ``windows`` for about ``seconds`` (the held-out checks included) or
    ``PASSES`` passes over the windows learned from, whichever ends first; ``progress(fraction, steps)`` is
    called after each step. The copy's weights come back only when it beats ``model`` on the held-out
    windows, or with ``force`` (tests). ``model`` itself is not changed."""
    started = time.monotonic()
    device = next(model.parameters()).device
    if len(windows) < 2:
        raise AdaptError("adapt: the video gives fewer than 2 windows (one to learn from, one to check)")
    held, learn = windows.split()
    checking = time.monotonic()
    served = held_out_db(model, held, task, device)
    check_time = time.monotonic() - checking
    tuned = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(tuned.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    end = started + max(0.0, seconds - 1.2 * check_time)  # the adapted weights' check fits in the budget
    most = max(1, math.ceil(PASSES * len(learn) / BATCH))

    def done(steps: int) -> float:
        """How far through the budget: its time or its steps, whichever runs out first."""
        return max((time.monotonic() - started) / max(end - started, 1e-9), steps / most)

    average = train.Average(tuned, 0.0)
    steps = 0
    while done(steps) < 1 and not (should_stop and should_stop()):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * rate_at(done(steps))
        batch = train.sample_batch(
            learn, rng, BATCH, task.low, min(POINTS, task.crop * task.crop), (task.scale, task.scale), (task.gap,)
        )
        pred = tuned(batch.image0.to(device), batch.image1.to(device), batch.points.to(device),
                     batch.t.to(device), batch.cell.to(device))  # fmt: skip
        loss = ops.charbonnier(pred, batch.target.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        average.decay = min(EMA, (1 + steps) / (10 + steps))
        average.update(tuned)
        if progress:
            progress(min(1.0, done(steps)), steps)
    tuned = average.model.eval()
    adapted = held_out_db(tuned, held, task, device)
    keep = force or adapted - served > MIN_GAIN
    state = {name: value.detach().clone() for name, value in tuned.state_dict().items()} if keep else None
    return AdaptResult(state, served, adapted, steps, time.monotonic() - started, task)
