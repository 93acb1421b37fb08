"""What ``POST /upsample`` and ``POST /decode`` share: stream the upload in, check it, queue, answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.routes.jobs import job_out, job_state, result_stream
from service.schemas import Problem
from service.storage import JobFiles, UploadMissingError, UploadTooLargeError, new_job_id, receive_upload
from worker.errors import VinrError


def upload_responses(*extra: int) -> dict:
    """OpenAPI responses of an upload route: the streamed video, and its error statuses."""
    streamed = {"content": {"video/mp4": {}}, "description": "with Accept: video/mp4 or wait=true"}
    return {200: streamed, **{code: {"model": Problem} for code in sorted({401, 413, 422, *extra})}}


def upload_body(what: str) -> dict:
    """OpenAPI request body of an upload: multipart field ``file`` or the raw body."""
    binary = {"type": "string", "format": "binary"}
    return {
        "requestBody": {
            "required": True,
            "description": f"{what}, as multipart field `file` or the raw body",
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["file"], "properties": {"file": binary}}
                },
                "application/octet-stream": {"schema": binary},
            },
        }
    }


async def submit(
    request: Request,
    settings,
    backend,
    owner: str,
    kind: str,
    params: dict,
    check: Callable[[Path], object],
    stream: bool,
) -> JSONResponse | StreamingResponse:
    """Create the job folder, receive and ``check`` the upload (its errors: 413 / 422), queue the job."""
    files = JobFiles(settings.data_dir, new_job_id())
    await run_in_threadpool(files.create, {"kind": kind, "owner": owner, "params": params})
    try:
        await receive_upload(request, files.input, settings.max_upload_bytes)
        await run_in_threadpool(check, files.input)
    except UploadTooLargeError as exc:
        files.delete()
        raise HTTPException(413, f"upload too large: {exc} (VINR_MAX_UPLOAD_BYTES)") from exc
    except (UploadMissingError, VinrError) as exc:
        files.delete()
        raise HTTPException(422, str(exc)) from exc
    except BaseException:
        files.delete()
        raise
    await run_in_threadpool(backend.enqueue, files.id, kind, str(files.dir), params)
    if stream:
        return result_stream(files, backend, settings.job_timeout)
    body = job_out(files, await job_state(backend, files.id))
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": f"/jobs/{files.id}"})


def wants_stream(wait: bool, accept: str | None) -> bool:
    """``?wait=true`` or ``Accept: video/mp4``: answer with the video as it is made."""
    return wait or bool(accept and "video/mp4" in accept)
