"""Job functions: ids, paths and plain parameters in, files out. RQ runs them; so does embedded mode.

``upsample_job`` reads the job folder's input and writes its result (``worker.folders``) as a fragmented
MP4 that grows while the job runs (the gateway streams it); a failed or canceled job deletes it.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.registry import DEFAULT_MODEL
from worker import runs
from worker.adapting import MAX_ADAPT_SECONDS, prepared_upsampler, saved_upsampler
from worker.decoding import run_decode
from worker.errors import CanceledError
from worker.folders import JobFolder
from worker.media import OutputOptions, VideoReader
from worker.pipeline import load_upsampler, run_upsample
from worker.planning import UpsampleRequest, plan_output
from worker.runs import attempt
from worker.runtime import ModelCache
from worker.segments import (
    DECODE,
    SEGMENT_SUFFIX,
    SegmentPlan,
    join_segments,
    render_segment,
    run_segmented,
    segment_options,
)

PROGRESS_INTERVAL = 0.5
"""Seconds between progress reports (each is a Redis write under RQ)."""


@dataclass
class JobContext:
    """How a running job reports progress and learns it was canceled."""

    report: Callable[[dict], None]
    should_stop: Callable[[], bool]
    models: ModelCache
    device: str = "auto"
    backend: str = "auto"
    bf16: bool = False
    encoder: str = "auto"  # VINR_ENCODER: the encoder kind of jobs that do not name one
    max_adapt: float = MAX_ADAPT_SECONDS  # VINR_MAX_ADAPT_SECONDS: the most a job's adaptation may take

    def request(self, params: dict) -> UpsampleRequest:
        """An upsample job's request, with this worker's device, backend, precision, encoder and caps."""
        return upsample_request(params, self.device, self.backend, self.bf16, self.encoder, self.max_adapt)


def job_output(params: dict, encoder: str = "auto") -> OutputOptions:
    """A job's output encoding from its plain parameters: always a fragmented MP4 (streamed as it grows);
    the job's ``encoder`` (auto, cpu, nvenc) where it names one, else ``encoder``."""
    kind = params.get("encoder") or encoder
    return OutputOptions(codec=params.get("codec") or "h264", crf=params.get("crf"), fragmented=True, encoder_kind=kind)


def upsample_request(
    params: dict,
    device: str,
    backend: str = "auto",
    bf16: bool = False,
    encoder: str = "auto",
    max_adapt: float = MAX_ADAPT_SECONDS,
) -> UpsampleRequest:
    """The pipeline request for a job's plain parameters (output always a fragmented MP4); ``adapt`` is cut
    to ``max_adapt`` seconds (the worker's ``VINR_MAX_ADAPT_SECONDS``; 0: no adaptation)."""
    output = job_output(params, encoder)
    return UpsampleRequest(
        scale=params.get("scale"),
        width=params.get("width"),
        height=params.get("height"),
        fps=params.get("fps"),
        time_factor=params.get("time_factor"),
        slowmo=params.get("slowmo"),
        slowmo_audio=params.get("slowmo_audio") or "drop",
        adapt=min(float(params["adapt"]), max_adapt) if params.get("adapt") and max_adapt > 0 else None,
        model=params.get("model") or DEFAULT_MODEL,
        device=device,
        backend=backend,
        bf16=bf16,
        output=output,
    )


def eta_seconds(done: float, total: float, rate: float) -> float | None:
    """Seconds left to reach ``total`` from ``done`` at ``rate`` a second (None while the rate is unknown)."""
    return max(0.0, total - done) / rate if rate > 0 else None


def progress_reporter(report: Callable[[dict], None], extra: dict | None = None) -> Callable[[int, int], None]:
    """Turn (frames done, total) calls into throttled reports with speed and ETA (and ``extra``: how an
    adaptation went)."""
    started, last = time.monotonic(), [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL and done < total:
            return
        last[0] = now
        fps = done / max(now - started, 1e-9)
        report(
            {
                "frames_done": done,
                "frames_total": total,
                "fps": round(fps, 3),
                "eta_s": round(eta, 1) if (eta := eta_seconds(done, total, fps)) is not None else None,
                **(extra or {}),
            }
        )

    return progress


def upsample_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Upsample the job folder's input into its result; returns a summary.

    With ``params["segment_seconds"]`` (embedded mode) an input longer than that is made segment by
    segment, one after another, the result growing as each is joined (``worker.segments``).
    """
    folder = Path(job_dir)
    with attempt(folder) as run:
        if params.get("segment_seconds") and longer_than(JobFolder(folder).input, float(params["segment_seconds"])):
            run.summary = _upsample_in_segments(folder, params, context)
        else:
            run.summary = _upsample(folder, params, context)
    return run.summary


def longer_than(path: Path, seconds: float) -> bool:
    """Whether a video lasts more than ``seconds`` (a shorter one is never segmented: it streams at once)."""
    with VideoReader(path) as reader:
        return reader.info.duration > seconds


def segment_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Render segment ``params["segment"]`` of a segmented job (its plan is in the job folder);
    a segment whose file exists is done and is not made again."""
    folder, index = Path(job_dir), int(params["segment"])
    with attempt(folder, segment=index) as run:
        request = context.request(params)
        segments = SegmentPlan.load(folder)
        segment = segments.segments[index]
        path = segment.file(folder, SEGMENT_SUFFIX)
        if not path.exists():
            with VideoReader(JobFolder(folder).input) as reader:
                plan = plan_output(reader.info, request)
            if request.adapt:  # the job's one adaptation (its own RQ job, run before every segment)
                upsampler = saved_upsampler(request, context.models, JobFolder(folder).adapted)
            else:
                upsampler = load_upsampler(request, context.models)
            progress = progress_reporter(context.report)
            render_segment(
                JobFolder(folder).input,
                path,
                request,
                plan,
                segments,
                segment,
                upsampler,
                progress,
                context.should_stop,
            )
        context.report({"frames_done": segment.frames, "frames_total": segment.frames})
        run.summary = {"segment": index, "frames": segment.frames}
    return run.summary


def adapt_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """A segmented job's adaptation, run once before its segments (they depend on it): the adapted weights,
    where the guard keeps them, go into the job folder for every segment; returns the summary."""
    folder = Path(job_dir)
    with attempt(folder, segment="adapt") as run:
        request = context.request(params)
        JobFolder(folder).adapted.unlink(missing_ok=True)  # a retried run starts afresh
        _, adapted = job_upsampler(folder, request, context)
        summary = adapted.get("adapt") or {}
        context.report({"frames_done": 0, "stage": "rendering", "adapt": summary})
        run.summary = {"segment": "adapt", "adapt": summary}
    return run.summary


def decode_segment_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Decode segment ``params["segment"]`` of a segmented decode: its frame range, timed from the
    whole range's start ``params["origin"]``; done when its file exists."""
    folder, index = Path(job_dir), int(params["segment"])
    with attempt(folder, segment=index) as run:
        segment = SegmentPlan.load(folder).segments[index]
        path = segment.file(folder, SEGMENT_SUFFIX)
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            first = int(params["origin"]) + segment.first
            run_decode(
                JobFolder(folder).input,
                path,
                f"{first}:{first + segment.frames}",
                segment_options(job_output(params, context.encoder)),
                progress=progress_reporter(context.report),
                should_stop=context.should_stop,
                video=params.get("video"),
                origin=int(params["origin"]),
            )
        context.report({"frames_done": segment.frames, "frames_total": segment.frames})
        run.summary = {"segment": index, "frames": segment.frames}
    return run.summary


def assemble_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Join a segmented job's segment files, in order, with the input's audio (an upsample's), into
    the result."""
    folder = Path(job_dir)
    with attempt(folder, segment="join") as run:
        segments = SegmentPlan.load(folder)
        source = None if segments.key == DECODE else JobFolder(folder).input
        output = private_result(folder)
        options = job_output(params, context.encoder)
        frames = join_segments(source, output, options, folder, segments, None, context.should_stop)
        adapted = (runs.finished(folder, "adapt") or {}).get("adapt")
        context.report({"frames_done": frames, "frames_total": frames, **({"adapt": adapted} if adapted else {})})
        # the segments stay: the gateway may be streaming them to a client (it removes them after)
        run.summary = {"frames": frames, "segments": len(segments.segments), **({"adapt": adapted} if adapted else {})}
    return run.summary


def private_result(folder: Path) -> Path:
    """The job's result file, created empty and readable by this user only (the encoder keeps the mode)."""
    path = JobFolder(folder).result
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    return path


def adapting_reporter(report: Callable[[dict], None], seconds: float) -> Callable[[float, int], None]:
    """Throttled reports of an adaptation's progress (the job's ``stage`` is ``adapting`` meanwhile)."""
    last = [0.0]

    def progress(done: float, steps: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_INTERVAL and done < 1:
            return
        last[0] = now
        report({"frames_done": 0, "stage": "adapting", "adapt": {"done": round(done, 3), "steps": steps,
                                                                 "budget_s": seconds}})  # fmt: skip

    return progress


def job_upsampler(folder: Path, request: UpsampleRequest, context: JobContext):
    """The job's upsampler, adapted to its input first where it asks (weights kept in its folder); and
    what to add to its progress and summary (the adaptation's summary)."""
    if not request.adapt:
        return load_upsampler(request, context.models), {}
    context.report(
        {"frames_done": 0, "stage": "adapting", "adapt": {"done": 0.0, "steps": 0, "budget_s": request.adapt}}
    )
    upsampler, summary = prepared_upsampler(
        JobFolder(folder).input,
        request,
        context.models,
        JobFolder(folder).adapted,
        adapting_reporter(context.report, request.adapt),
        context.should_stop,
    )
    if context.should_stop():
        raise CanceledError("adapt: canceled")
    return upsampler, {"stage": "rendering", "adapt": summary}


def _upsample(folder: Path, params: dict, context: JobContext) -> dict:
    request = context.request(params)
    upsampler, adapted = job_upsampler(folder, request, context)
    result = run_upsample(
        JobFolder(folder).input,
        private_result(folder),
        request,
        progress=progress_reporter(context.report, adapted),
        should_stop=context.should_stop,
        upsampler=upsampler,
        atomic=False,
    )
    return {
        "frames": result.frames,
        "width": result.plan.width,
        "height": result.plan.height,
        "fps": float(result.plan.fps),
        "seconds": round(result.seconds, 3),
        **({"adapt": adapted["adapt"]} if adapted else {}),
    }


def _upsample_in_segments(folder: Path, params: dict, context: JobContext) -> dict:
    request = context.request(params)
    started = time.perf_counter()
    upsampler, adapted = job_upsampler(folder, request, context)  # once: every segment renders with it
    plan, segments, frames = run_segmented(
        JobFolder(folder).input,
        private_result(folder),
        request,
        folder,
        upsampler,
        length=float(params["segment_seconds"]),
        progress=progress_reporter(context.report, adapted),
        should_stop=context.should_stop,
    )
    shutil.rmtree(JobFolder(folder).segments, ignore_errors=True)
    return {
        "frames": frames,
        "width": plan.width,
        "height": plan.height,
        "fps": float(plan.fps),
        "segments": len(segments.segments),
        "seconds": round(time.perf_counter() - started, 3),
        **({"adapt": adapted["adapt"]} if adapted else {}),
    }


def decode_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Decode the job folder's bitstream into its result; returns a summary."""
    folder = Path(job_dir)
    with attempt(folder) as run:
        run.summary = _decode(folder, params, context)
    return run.summary


def _decode(folder: Path, params: dict, context: JobContext) -> dict:
    output = job_output(params)
    result = run_decode(
        JobFolder(folder).input,
        private_result(folder),
        params.get("frames"),
        output,
        progress=progress_reporter(context.report),
        should_stop=context.should_stop,
        atomic=False,
        video=params.get("video"),
    )
    return {
        "frames": result.frames,
        "width": result.width,
        "height": result.height,
        "seconds": round(result.seconds, 3),
    }


JOB_FUNCTIONS = {
    "upsample": "worker.process.rq_upsample",
    "decode": "worker.process.rq_decode",
    "segment": "worker.process.rq_segment",
    "assemble": "worker.process.rq_assemble",
    "decode_segment": "worker.process.rq_decode_segment",
    "adapt": "worker.process.rq_adapt",
}
"""Job kind -> the dotted path RQ imports (plain strings: the queue never pickles functions); the RQ
entry points live beside the RQ worker, in ``worker.process``."""

JOBS = {
    "upsample": upsample_job,
    "decode": decode_job,
    "segment": segment_job,
    "assemble": assemble_job,
    "decode_segment": decode_segment_job,
    "adapt": adapt_job,
}
"""Job kind -> the function an embedded worker calls."""


def run_job(kind: str, job_dir: str, params: dict, context: JobContext) -> dict:
    """Run job function ``kind``, unless its folder says this job (or segment) already finished: then its
    summary, without making it again (Redis restored from an out-of-date file can queue a finished job)."""
    folder = Path(job_dir)
    segment = {"segment": params.get("segment"), "decode_segment": params.get("segment")}.get(kind)
    segment = {"assemble": "join", "adapt": "adapt"}.get(kind, segment)
    summary = runs.finished(folder, segment)
    if summary is not None:
        runs.log(folder, "skipped", reason="already finished", segment=segment, host=socket.gethostname())
        return summary
    return JOBS[kind](job_dir, params, context)
