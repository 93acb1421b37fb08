"""Job functions: ids, paths and plain parameters in, files out. RQ runs them; so does embedded mode.

``upsample_job`` reads ``JOB_DIR/input`` and writes ``JOB_DIR/result.mp4`` as a fragmented MP4 that
grows while the job runs (the gateway streams it); a failed or canceled job deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from models.registry import DEFAULT_MODEL
from worker.media import OutputOptions
from worker.pipeline import UpsampleRequest, load_upsampler, run_upsample
from worker.runtime import ModelCache

PROGRESS_INTERVAL = 0.5
"""Seconds between progress reports (each is a Redis write under RQ)."""
ATTEMPTS = "attempts.jsonl"
"""The job folder's log of runs: a ``start`` and an ``end`` JSON line per run (host, pid, wall time)."""


@dataclass
class JobContext:
    """How a running job reports progress and learns it was canceled."""

    report: Callable[[dict], None]
    should_stop: Callable[[], bool]
    models: ModelCache
    device: str = "auto"
    backend: str = "auto"


def upsample_request(params: dict, device: str, backend: str = "auto") -> UpsampleRequest:
    """The pipeline request for a job's plain parameters (output always a fragmented MP4)."""
    output = OutputOptions(codec=params.get("codec") or "h264", crf=params.get("crf"), fragmented=True)
    return UpsampleRequest(
        scale=params.get("scale"),
        width=params.get("width"),
        height=params.get("height"),
        fps=params.get("fps"),
        time_factor=params.get("time_factor"),
        model=params.get("model") or DEFAULT_MODEL,
        device=device,
        backend=backend,
        output=output,
    )


def progress_reporter(report: Callable[[dict], None]) -> Callable[[int, int], None]:
    """Turn (frames done, total) calls into throttled reports with speed and ETA."""
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
                "eta_s": round((total - done) / fps, 1) if fps > 0 else None,
            }
        )

    return progress


@contextlib.contextmanager
def attempt(folder: Path) -> Iterator[None]:
    """Log this run's start and end (with how it ended) in the job folder's ``attempts.jsonl``.

    A run that fails removes its partial ``result.mp4``, so a failed job never leaves a half-written video.
    """
    run = {"host": socket.gethostname(), "pid": os.getpid()}

    def log(event: str, **extra) -> None:
        line = json.dumps({"event": event, "time": time.time(), **run, **extra}) + "\n"
        with contextlib.suppress(OSError):  # the folder may have been deleted (DELETE /jobs/ID)
            handle = os.open(folder / ATTEMPTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(handle, "a") as sink:
                sink.write(line)

    log("start")
    try:
        yield
    except BaseException as exc:
        (folder / "result.mp4").unlink(missing_ok=True)
        log("end", outcome=type(exc).__name__)
        raise
    log("end", outcome="finished")


def upsample_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Upsample ``job_dir/input`` into ``job_dir/result.mp4``; returns a summary."""
    folder = Path(job_dir)
    with attempt(folder):
        return _upsample(folder, params, context)


def private_result(folder: Path) -> Path:
    """``folder/result.mp4``, created empty and readable by this user only (the encoder keeps the mode)."""
    path = folder / "result.mp4"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    return path


def _upsample(folder: Path, params: dict, context: JobContext) -> dict:
    request = upsample_request(params, context.device, context.backend)
    upsampler = load_upsampler(request, context.models)
    result = run_upsample(
        folder / "input",
        private_result(folder),
        request,
        progress=progress_reporter(context.report),
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
    }


def decode_job(job_dir: str, params: dict, context: JobContext) -> dict:
    """Decode the bitstream ``job_dir/input`` into ``job_dir/result.mp4``; returns a summary."""
    folder = Path(job_dir)
    with attempt(folder):
        return _decode(folder, params, context)


def _decode(folder: Path, params: dict, context: JobContext) -> dict:
    from worker.decoding import run_decode

    output = OutputOptions(codec=params.get("codec") or "h264", crf=params.get("crf"), fragmented=True)
    result = run_decode(
        folder / "input",
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


JOB_FUNCTIONS = {"upsample": "worker.process.rq_upsample", "decode": "worker.process.rq_decode"}
"""Job kind -> the dotted path RQ imports (plain strings: the queue never pickles functions); the RQ
entry points live beside the RQ worker, in ``worker.process``."""

JOBS = {"upsample": upsample_job, "decode": decode_job}
"""Job kind -> the function an embedded worker calls."""
