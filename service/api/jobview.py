"""How a job is shown: its state from the queue backend, its JSON body, its growing result.

Shared by the job routes and the submit routes (which answer with the new job), so neither imports
the other's router.
"""

from __future__ import annotations

import re
from pathlib import PureWindowsPath

from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from service.live import is_segmented, live_result
from service.queue import JobState, RQBackend
from service.schemas import JobOut, Progress
from service.storage import JobFiles, follow
from worker import runs
from worker.errors import person_text
from worker.states import CANCELED_BY_REQUEST, State


async def job_state(backend, files: JobFiles) -> JobState:
    """The backend's state of a job, reconciled with its folder (``reconcile``): on the event loop in one
    Redis round trip where that tells (queued, running, finished), else in a thread. A job canceled with
    ``POST /jobs/ID/cancel`` is canceled, as its ``job.json`` says, whatever the queue says after."""
    canceled = canceled_state(files)
    if canceled is not None:
        return canceled
    quick = await backend.quick_state(files.id)
    if quick is not None:
        return quick
    return await run_in_threadpool(lambda: reconcile(files, backend.state(files.id), backend.lost))


def reconcile(files: JobFiles, state: JobState | None, lost: str) -> JobState:
    """The queue's state of a job where it is sure, else what the job's folder says (``worker.runs``).

    A job whose folder holds a finished run is finished, whatever Redis says after losing its data or
    an embedded gateway after a restart (failed, or no record at all). A job whose record is gone is
    running while a run of it beats, else it failed with the backend's reason ``lost``. Queued and
    running states are taken as they are (a worker skips a job whose folder says it finished), so a
    status read of a running job reads no file.
    """
    if state is not None and state.state is not State.FAILED:
        return state
    summary = runs.finished(files.dir)
    if summary is not None:
        frames = summary.get("frames")
        progress = {"frames_done": frames, "frames_total": frames} if frames else {}
        return JobState(State.FINISHED, progress, result=summary, ended_at=runs.ended_at(files.dir))
    if state is not None:
        return state
    if runs.running(files.dir):
        return JobState(State.STARTED)
    return JobState(State.FAILED, error=lost, ended_at=runs.ended_at(files.dir))


def canceled_state(files: JobFiles) -> JobState | None:
    """The state ``job.json`` keeps for a job canceled and kept (``POST /jobs/ID/cancel``), else None."""
    meta = files.meta() or {}
    if "canceled_at" not in meta:
        return None
    return JobState(State.CANCELED, meta.get("progress", {}), CANCELED_BY_REQUEST, ended_at=meta["canceled_at"])


async def job_state_or_none(backend, files: JobFiles) -> JobState | None:
    """``job_state``, or None while Redis is unreachable (streams wait for it instead of breaking)."""
    try:
        return await job_state(backend, files)
    except RedisError:
        return None


def download_name(files: JobFiles, state: JobState) -> str:
    """What a finished result is saved as: the uploaded file's name and what was made of it
    (``clip_vinr_1920x1080_60fps.mp4``); the job id stands in for an upload that gave no name."""
    meta = files.meta() or {}
    uploaded = PureWindowsPath(str(meta.get("name", ""))).stem  # a Windows path's separators are both / and \\
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", uploaded)
    parts = [stem.strip("._-")[:80] or files.id, "vinr"]
    made = state.result or runs.finished(files.dir) or {}  # RQ's quick status read carries no result
    if "width" in made and "height" in made:
        parts.append(f"{made['width']}x{made['height']}")
    if "fps" in made:
        parts.append(f"{round(float(made['fps']), 3):g}fps")
    return "_".join(parts) + ".mp4"


def job_out(files: JobFiles, state: JobState) -> JobOut:
    meta = files.meta() or {}
    return JobOut(
        id=files.id,
        kind=meta.get("kind", "upsample"),
        state=state.state,
        progress=Progress(**state.progress),
        error=person_text(files.redact(state.error)) if state.error else None,
        params=meta.get("params", {}),
        name=meta.get("name"),
        output=meta.get("output"),
        queue_position=state.queue_position,
        created_at=meta.get("created_at", 0.0),
        ended_at=state.ended_at,
        result_url=f"/jobs/{files.id}/result",
        events_url=f"/jobs/{files.id}/events",
    )


def result_stream(files: JobFiles, backend, timeout: float) -> StreamingResponse:
    """The result as it is written, ending when the job ends (a segmented RQ job's: joined live here)."""

    async def finished() -> bool:
        state = await job_state_or_none(backend, files)
        return state is not None and state.done

    headers = {"Location": f"/jobs/{files.id}", "X-Job-Id": files.id, "Cache-Control": "no-store"}
    body = None
    if isinstance(backend, RQBackend) and is_segmented(files) and not files.result.exists():
        body = live_result(files, lambda: backend.state(files.id), timeout)  # joined here as segments finish
    return StreamingResponse(body or follow(files.result, finished, timeout), media_type="video/mp4", headers=headers)
