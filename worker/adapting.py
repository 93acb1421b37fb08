"""``--adapt SECONDS``: the served model fine-tuned on the job's own video before it renders
(``models.videoinr.adapt``), within the time budget, kept only where it beats the served weights on
held-out windows of the video.

The windows are spread over the whole input, decoded once, never across a scene cut (``SceneCutDetector``,
the renderer's own rule), each cropped to a bounded square, so memory does not grow with the video. The
adapted weights are written into the job's folder (``adapted.safetensors`` and its card): a segmented
job's segments and the job's previews render with them; they are never shared with another job.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from models import registry
from models.videoinr import adapt as adaptation
from models.videoinr.adapt import AdaptError, AdaptResult, AdaptTask, Windows
from models.videoinr.upsampler import Upsampler
from worker.media import VideoReader
from worker.pipeline import load_upsampler
from worker.planning import UpsampleRequest, plan_output
from worker.runtime import ModelCache
from worker.scenes import SceneCutDetector
from worker.segments import frame_times

MAX_ADAPT_SECONDS = 3600.0
"""Largest budget the CLI takes; the service's own cap is ``VINR_MAX_ADAPT_SECONDS``."""
READING_SHARE = 0.5
"""Most of the budget that decoding the windows may take (a long or large input is read only so far)."""


def task_for(source: Path, request: UpsampleRequest) -> tuple[AdaptTask, int]:
    """The adaptation task of ``request`` on ``source`` and the input's frame count (from its packets)."""
    with VideoReader(source) as reader:
        info = reader.info
    plan = plan_output(info, request, check_nvenc=False)
    scale = max(plan.width / info.width, plan.height / info.height)
    time_factor = float(plan.sample_fps / Fraction(info.fps))
    times, _ = frame_times(source)
    return adaptation.adapt_task(info.height, info.width, scale, time_factor), len(times)


def collect_windows(
    source: Path,
    task: AdaptTask,
    frames: int,
    count: int,
    seed: int = 0,
    deadline: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Windows:
    """``count`` windows of ``task.length`` frames at evenly spread starts over the ``frames`` of ``source``,
    decoded in one pass; a window that a cut crosses starts again after the cut; each cropped to
    a ``task.side`` square at a random place (``models.videoinr.adapt.sample_windows``'s layout). Decoding stops
    after the last window, at ``deadline`` (``time.monotonic()``: the windows read so far are used) or
    when ``should_stop()``."""
    last = max(0, frames - task.length)
    wanted = sorted({round(i * last / max(1, count - 1)) for i in range(count)})
    rng = np.random.default_rng(seed)
    detector = SceneCutDetector()
    recent: list[np.ndarray] = []  # the last frames since a cut, at most one window's
    windows, starts, turn = [], [], 0
    with VideoReader(source) as reader:
        for index, frame in enumerate(reader.frames()):
            if turn == len(wanted) or (deadline is not None and time.monotonic() > deadline):
                break
            if should_stop and should_stop():
                break
            if detector.push(frame.image):
                recent = []
            recent = (recent + [frame.image])[-task.length :]
            start = index - task.length + 1
            if turn < len(wanted) and len(recent) == task.length and start >= wanted[turn]:
                (height, width), side = recent[0].shape[:2], task.side
                y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
                clip = np.stack([f[y : y + side, x : x + side] for f in recent])
                windows.append(np.clip(np.rint(clip * 255), 0, 255).astype(np.uint8))
                starts.append(start)
                while turn < len(wanted) and wanted[turn] <= start:
                    turn += 1
    if len(windows) < 2:
        raise AdaptError(
            f"adapt: the video gives {len(windows)} window(s) of {task.length} frames without a cut; "
            "it needs 2 (one to learn from, one to check)"
        )
    return Windows(np.stack(windows), tuple(starts))


def adapt_to_video(
    source: Path,
    request: UpsampleRequest,
    model: torch.nn.Module,
    seconds: float,
    progress: Callable[[float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AdaptResult:
    """Adapt ``model`` (a served VideoINR module, not changed) to ``source`` for ``request`` within about
    ``seconds``, reading the windows included; a video too small or too short to learn from gives a
    refusal (the served weights) with the reason, not an error."""
    started = time.monotonic()
    try:
        task, frames = task_for(source, request)
        reading = started + READING_SHARE * seconds
        windows = collect_windows(source, task, frames, adaptation.WINDOWS, deadline=reading, should_stop=should_stop)
        left = max(0.0, seconds - (time.monotonic() - started))
        result = adaptation.adapt(model, windows, task, left, progress, should_stop)
    except AdaptError as exc:
        return AdaptResult.refusal(str(exc), time.monotonic() - started)
    result.seconds = time.monotonic() - started
    return result


def save_adapted(model: torch.nn.Module, result: AdaptResult, path: Path, served: str) -> Path:
    """Write the adapted weights of ``model``'s kind and their card (what they were adapted from and how
    they scored) to ``path``."""
    tuned = copy.deepcopy(model).cpu()
    assert result.state is not None
    tuned.load_state_dict(result.state)
    card = {"adapted_from": served, "data": "the job's own input video (self-supervised windows)",
            "adapt": result.summary()}  # fmt: skip
    return registry.save(tuned, path, card)


def prepared_upsampler(
    source: Path,
    request: UpsampleRequest,
    cache: ModelCache,
    weights_path: Path | None = None,
    progress: Callable[[float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Upsampler, dict | None]:
    """The upsampler a run renders with and the adaptation's summary: the served model, or with
    ``request.adapt`` seconds the weights adapted to ``source`` where they beat the served ones on the
    held-out windows (written to ``weights_path`` when given), else the served model again."""
    if not request.adapt:
        return load_upsampler(request, cache), None
    module = cache.module(request.model, request.device)
    result = adapt_to_video(source, request, module, request.adapt, progress, should_stop)
    if result.used and weights_path is not None and not (should_stop and should_stop()):  # canceled: no folder
        save_adapted(module, result, weights_path, request.model)
    return load_upsampler(request, cache, result.state), result.summary()


def saved_upsampler(request: UpsampleRequest, cache: ModelCache, path: Path) -> Upsampler:
    """The upsampler of a job whose adapted weights are at ``path`` (a segment, a preview), or of the served
    model where there are none (the guard kept the served weights)."""
    return load_upsampler(request, cache, load_file(str(path)) if path.is_file() else None)


def describe(summary: dict) -> str:
    """One line saying how an adaptation went."""
    if summary.get("refused"):
        return f"not adapted: {summary['refused']}; rendering with the served weights"
    head = f"adapted for {summary['seconds']:.1f} s ({summary['steps']} steps): held-out {summary['gain_db']:+.2f} dB"
    if summary["used"]:
        return f"{head}; rendering with the adapted weights"
    return f"{head}, not better: rendering with the served weights"
