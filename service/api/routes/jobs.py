"""Job resources: state, progress events, the (growing) result, cancellation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from service.api.deps import BackendDep, JobDep, OwnerDep, SettingsDep
from service.api.jobview import download_name, job_out, job_state, job_state_or_none, result_stream
from service.schemas import JobList, JobOut, Problem
from service.storage import owned_jobs
from worker.states import State

router = APIRouter(prefix="/jobs", tags=["jobs"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no or a wrong API key"},
    404: {"model": Problem, "description": "no such job (or another key's)"},
    503: {"model": Problem, "description": "Redis is unreachable; retry after Retry-After seconds"},
}
EVENT_INTERVAL = 0.5
"""Seconds between progress looks on an event stream."""
EVENT_PING = 15
"""Seconds between keep-alive comments on an event stream."""


PAGE_LIMIT = 100
"""Most jobs on one page of ``GET /jobs``."""


@router.get("", response_model=JobList, responses={k: v for k, v in NOT_FOUND.items() if k != 404})
async def list_jobs(
    settings: SettingsDep,
    backend: BackendDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT, description="jobs per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=10**6, description="jobs to skip (newest first)")] = 0,
) -> JobList:
    """The caller's jobs (this API key's only), newest first, a page at a time."""
    mine = await run_in_threadpool(owned_jobs, settings.data_dir, owner)
    page = [job_out(files, await job_state(backend, files)) for files in mine[offset : offset + limit]]
    more = offset + limit < len(mine)
    return JobList(jobs=page, total=len(mine), next=f"/jobs?limit={limit}&offset={offset + limit}" if more else None)


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
async def get_job(files: JobDep, backend: BackendDep) -> Response:
    """A job's state, progress (frames, speed, ETA) and error."""
    # the model's own JSON: FastAPI's response_model pass (validation, jsonable_encoder) cost more than the read
    body = job_out(files, await job_state(backend, files)).model_dump_json()
    return Response(body, media_type="application/json")


@router.get(
    "/{job_id}/events",
    responses={
        **NOT_FOUND,
        200: {"content": {"text/event-stream": {}}, "description": "`progress` events, then `end`"},
    },
)
async def job_events(files: JobDep, backend: BackendDep) -> EventSourceResponse:
    """Server-Sent Events: a `progress` event (the job's JSON) on every change, `end` when it ends; a
    comment line every EVENT_PING seconds keeps proxies from closing a quiet stream."""

    async def events() -> AsyncIterator[ServerSentEvent]:
        last = None
        while True:
            state = await job_state_or_none(backend, files)
            if state is None:  # Redis away: say so once, keep the stream open, look again
                if last != "unavailable":
                    last = "unavailable"
                    yield ServerSentEvent(
                        json.dumps({"detail": "the job queue (Redis) is unreachable"}), event="unavailable"
                    )
                await asyncio.sleep(EVENT_INTERVAL)
                continue
            body = job_out(files, state).model_dump_json()
            if body != last:
                last = body
                yield ServerSentEvent(body, event="progress")
            if state.done:
                yield ServerSentEvent(json.dumps({"state": state.state.value}), event="end")
                return
            await asyncio.sleep(EVENT_INTERVAL)

    return EventSourceResponse(events(), ping=EVENT_PING, sep="\n", headers={"Cache-Control": "no-store"})


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
    state = await job_state(backend, files)
    if state.state in (State.FAILED, State.CANCELED):
        raise HTTPException(409, f"the job {state.state}: {state.error}")
    if state.done:
        if not files.result.is_file():
            raise HTTPException(410, "the result has expired")
        return FileResponse(files.result, media_type="video/mp4", filename=download_name(files, state))
    return result_stream(files, backend, settings.job_timeout)


@router.get(
    "/{job_id}/input",
    responses={
        **NOT_FOUND,
        410: {"model": Problem, "description": "the upload is gone (the job was canceled)"},
        200: {"content": {"application/octet-stream": {}}, "description": "the uploaded file, with Range support"},
    },
)
async def job_input(files: JobDep) -> FileResponse:
    """The job's upload as it was sent (the page plays it beside the result); gone once the job is canceled."""
    if not files.input.is_file():
        raise HTTPException(410, "the job's upload is gone (a canceled job keeps no files)")
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    return FileResponse(files.input, media_type="application/octet-stream", headers=headers)


@router.post("/{job_id}/cancel", response_model=JobOut, responses=NOT_FOUND)
async def cancel_job(files: JobDep, backend: BackendDep, request: Request) -> JobOut:
    """Cancel a queued or running job and keep it listed as canceled, with the progress it had: its upload
    and partial result are deleted, its record stays until it expires (``DELETE`` removes it at once). A
    job that has already ended is left as it is."""
    state = await job_state(backend, files)
    if not state.done:
        meta = {**(files.meta() or {}), "canceled_at": time.time(), "progress": state.progress}
        await run_in_threadpool(backend.cancel, files.id)
        await run_in_threadpool(files.write_meta, meta)
        request.app.state.metas.forget(files.id)
        files.known = meta
        await run_in_threadpool(files.drop_data)
        state = await job_state(backend, files)
    return job_out(files, state)


@router.delete("/{job_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
async def delete_job(files: JobDep, backend: BackendDep, request: Request) -> Response:
    """Cancel a queued or running job and delete its files."""
    request.app.state.metas.forget(files.id)
    await run_in_threadpool(backend.cancel, files.id)
    await run_in_threadpool(files.delete)
    return Response(status_code=204)
