"""Job resources: state, progress events, the (growing) result, cancellation."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from service.api.deps import BackendDep, JobDep, SettingsDep
from service.queue import JobState
from service.schemas import JobOut, Problem, Progress
from service.storage import JobFiles, follow

router = APIRouter(prefix="/jobs", tags=["jobs"])
NOT_FOUND = {
    401: {"model": Problem, "description": "no or a wrong API key"},
    404: {"model": Problem, "description": "no such job (or another key's)"},
    503: {"model": Problem, "description": "Redis is unreachable; retry after Retry-After seconds"},
}
EVENT_INTERVAL = 0.5
"""Seconds between progress looks on an event stream."""


async def job_state(backend, job_id: str) -> JobState:
    """The backend's state of a job; a failed state with the backend's reason when its record is gone."""
    return await run_in_threadpool(backend.state, job_id) or JobState("failed", error=backend.lost)


async def job_state_or_none(backend, job_id: str) -> JobState | None:
    """``job_state``, or None while Redis is unreachable (streams wait for it instead of breaking)."""
    try:
        return await job_state(backend, job_id)
    except RedisError:
        return None


def job_out(files: JobFiles, state: JobState) -> JobOut:
    meta = files.meta() or {}
    return JobOut(
        id=files.id,
        kind=meta.get("kind", "upsample"),
        state=state.state,
        progress=Progress(**state.progress),
        error=files.redact(state.error) if state.error else None,
        params=meta.get("params", {}),
        created_at=meta.get("created_at", 0.0),
        result_url=f"/jobs/{files.id}/result",
        events_url=f"/jobs/{files.id}/events",
    )


def result_stream(files: JobFiles, backend, timeout: float) -> StreamingResponse:
    """The result as it is written, ending when the job ends."""

    async def finished() -> bool:
        state = await job_state_or_none(backend, files.id)
        return state is not None and state.done

    headers = {"Location": f"/jobs/{files.id}", "X-Job-Id": files.id, "Cache-Control": "no-store"}
    return StreamingResponse(follow(files.result, finished, timeout), media_type="video/mp4", headers=headers)


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
async def get_job(files: JobDep, backend: BackendDep) -> JobOut:
    """A job's state, progress (frames, speed, ETA) and error."""
    return job_out(files, await job_state(backend, files.id))


@router.get(
    "/{job_id}/events",
    responses={
        **NOT_FOUND,
        200: {"content": {"text/event-stream": {}}, "description": "`progress` events, then `end`"},
    },
)
async def job_events(files: JobDep, backend: BackendDep, request: Request) -> StreamingResponse:
    """Server-Sent Events: a `progress` event (the job's JSON) on every change, `end` when it ends."""

    async def events():
        last = None
        while not await request.is_disconnected():
            state = await job_state_or_none(backend, files.id)
            if state is None:  # Redis away: say so once, keep the stream open, look again
                if last != "unavailable":
                    last = "unavailable"
                    yield 'event: unavailable\ndata: {"detail": "the job queue (Redis) is unreachable"}\n\n'
                await asyncio.sleep(EVENT_INTERVAL)
                continue
            body = job_out(files, state).model_dump_json()
            if body != last:
                last = body
                yield f"event: progress\ndata: {body}\n\n"
            if state.done:
                yield f"event: end\ndata: {json.dumps({'state': state.state})}\n\n"
                return
            await asyncio.sleep(EVENT_INTERVAL)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get(
    "/{job_id}/result",
    responses={
        **NOT_FOUND,
        409: {"model": Problem, "description": "the job failed"},
        200: {"content": {"video/mp4": {}}},
        206: {"description": "a Range"},
    },
)
async def job_result(files: JobDep, backend: BackendDep, settings: SettingsDep):
    """The video: streamed while the job runs (fragmented MP4), the file with Range support when done."""
    state = await job_state(backend, files.id)
    if state.state in ("failed", "canceled"):
        raise HTTPException(409, f"the job {state.state}: {state.error}")
    if state.done:
        if not files.result.is_file():
            raise HTTPException(410, "the result has expired")
        return FileResponse(files.result, media_type="video/mp4", filename=f"{files.id}.mp4")
    return result_stream(files, backend, settings.job_timeout)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
async def delete_job(files: JobDep, backend: BackendDep) -> Response:
    """Cancel a queued or running job and delete its files."""
    await run_in_threadpool(backend.cancel, files.id)
    await run_in_threadpool(files.delete)
    return Response(status_code=204)
