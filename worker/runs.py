"""A job folder's own record of its runs: what the folder knows when Redis (or an embedded gateway's
memory) does not.

Each run appends a ``start`` line to ``attempts.jsonl``, then an ``end`` line saying how it ended (a
finished run's line also holds the job's summary). While it runs, a thread touches ``heartbeat`` every
``RUN_BEAT`` seconds. Two rules follow from this record:

- a worker never runs a job, or a segment, again once its folder says it finished (``finished``), even
  when Redis, restored from an out-of-date append-only file, queues it again;
- the gateway takes a finished run as finished whatever the queue says (a record lost with Redis's data,
  or with an embedded gateway's restart). It takes a run whose record is gone as running while its
  heartbeat is fresh (``running``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from worker.folders import ATTEMPTS, HEARTBEAT, JobFolder
from worker.states import State

RUN_BEAT = 5.0
"""Seconds between touches of a running job's heartbeat file."""
RUN_ALIVE = 30.0
"""Seconds a heartbeat stays fresh: six beats, so a busy host or a clock a little off between the hosts
sharing the volume does not make a live run look dead."""
WHOLE_JOB = (None, "join")
"""The ``segment`` of the runs that make a job's result: the job's own run, or a segmented job's join."""


@dataclass
class Run:
    """What a running job hands back to its ``attempt``: the summary its end line keeps."""

    summary: dict | None = None
    about: dict = field(default_factory=dict)


def log(folder: Path, event: str, **fields) -> None:
    """Append one line to the folder's run log (nothing when the folder is gone: DELETE /jobs/ID)."""
    line = json.dumps({"event": event, "time": time.time(), **fields}) + "\n"
    with contextlib.suppress(OSError):
        handle = os.open(folder / ATTEMPTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(handle, "a") as sink:
            sink.write(line)


def lines(folder: Path) -> list[dict]:
    """The folder's run log, oldest first (a line cut short by a crash is skipped)."""
    try:
        text = (folder / ATTEMPTS).read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            found.append(json.loads(line))
    return found


def finished(folder: Path, segment: int | str | None = None) -> dict | None:
    """The summary of a finished run of ``segment`` (None: the job's own run), or None if none finished.
    A whole job counts as finished only while its result file is there."""
    parts = WHOLE_JOB if segment in WHOLE_JOB else (segment,)
    for line in reversed(lines(folder)):
        if line.get("event") == "end" and line.get("outcome") == State.FINISHED.value and line.get("segment") in parts:
            if parts is WHOLE_JOB and not JobFolder(folder).result.is_file():
                return None
            return line.get("summary") or {}
    return None


def ended_at(folder: Path) -> float | None:
    """When the folder's last run ended (Unix time), or None while none has."""
    ends = [line.get("time") for line in lines(folder) if line.get("event") == "end"]
    return ends[-1] if ends else None


def running(folder: Path) -> bool:
    """Whether a run has started and not ended, and its heartbeat is fresh."""
    open_runs: dict[tuple, int] = {}
    for line in lines(folder):
        key = (line.get("host"), line.get("pid"), line.get("segment"))
        open_runs[key] = open_runs.get(key, 0) + (1 if line.get("event") == "start" else -1)
    if not any(count > 0 for count in open_runs.values()):
        return False
    try:
        return time.time() - (folder / HEARTBEAT).stat().st_mtime < RUN_ALIVE
    except OSError:
        return False


@contextlib.contextmanager
def attempt(folder: Path, **about) -> Iterator[Run]:
    """Log this run's start and end (with how it ended, and the summary the caller sets on the yielded
    ``Run``) and touch the heartbeat file while it lasts; ``about`` goes in both lines (a segment's number).

    A run that fails removes its partial ``result.mp4``, so a failed job never leaves a half-written video.
    """
    run = Run(about={"host": socket.gethostname(), "pid": os.getpid(), **about})
    stop = threading.Event()
    beat = threading.Thread(target=keep_beating, args=(folder, stop), name="run-heartbeat", daemon=True)
    log(folder, "start", **run.about)
    beat.start()
    try:
        yield run
    except BaseException as exc:
        JobFolder(folder).result.unlink(missing_ok=True)
        log(folder, "end", outcome=type(exc).__name__, **run.about)
        raise
    finally:
        stop.set()
        beat.join()
    log(folder, "end", outcome=State.FINISHED.value, summary=run.summary, **run.about)


def keep_beating(folder: Path, stop: threading.Event) -> None:
    """Touch the heartbeat file every ``RUN_BEAT`` seconds until ``stop``."""
    while True:
        with contextlib.suppress(OSError):
            (folder / HEARTBEAT).touch(mode=0o600)
        if stop.wait(RUN_BEAT):
            return
