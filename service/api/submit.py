"""What ``POST /upsample`` and ``POST /decode`` share: stream the upload in, check it, queue, answer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from service.api.jobview import job_out, job_state, result_stream
from service.schemas import Problem
from service.storage import (
    JobFiles,
    TooManyUploadsError,
    UploadMalformedError,
    UploadMissingError,
    UploadStalledError,
    UploadTooLargeError,
    new_job_id,
    receive_upload,
    redact,
    upload_key,
)
from worker.errors import VinrError, person_text


def upload_responses(*extra: int) -> dict:
    """OpenAPI responses of an upload route: the streamed video, and its error statuses."""
    streamed = {"content": {"video/mp4": {}}, "description": "with Accept: video/mp4 or wait=true"}
    codes = {400, 401, 408, 413, 422, 429, 503, *extra}
    return {200: streamed, **{code: {"model": Problem} for code in sorted(codes)}}


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
    check: Callable[[Path], dict | None],
    stream: bool,
) -> JSONResponse | StreamingResponse:
    """Create the job folder, receive and ``check`` the upload, queue the job; any failure removes the folder.
    What ``check`` returns (the planned output) is kept in the job's ``job.json``."""
    try:
        with request.app.state.uploads.slot(upload_key(request, owner)):
            files = JobFiles(settings.data_dir, new_job_id())
            await run_in_threadpool(files.create, {"kind": kind, "owner": owner, "params": params})
            try:
                upload = await receive_upload(
                    request,
                    files.input,
                    settings.max_upload_bytes,
                    settings.upload_idle_timeout,
                    settings.upload_min_rate,
                )
                checked = await run_in_threadpool(check, files.input)
                learned = dict(checked) if isinstance(checked, dict) else {}  # e.g. the planned output
                if upload.name:  # what the download is named after (download_name)
                    learned["name"] = upload.name
                if learned:
                    await run_in_threadpool(files.write_meta, {**(files.meta() or {}), **learned})
                files.uploaded()  # before the job can run: a folder with the mark may be removed as dead
                await run_in_threadpool(backend.enqueue, files.id, kind, str(files.dir), params)
            except BaseException as exc:
                files.delete()
                error = upload_error(exc, files.dir)
                if error is exc:
                    raise
                raise error from exc
    except TooManyUploadsError as exc:
        raise HTTPException(429, f"too many uploads: {exc}", headers={"Retry-After": "5"}) from exc
    if stream:
        return result_stream(files, backend, settings.job_timeout)
    body = job_out(files, await job_state(backend, files))
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": f"/jobs/{files.id}"})


def upload_error(exc: BaseException, folder: Path) -> BaseException:
    """The HTTP error an upload's failure gives (its message without ``folder``'s path); others unchanged."""
    statuses = {
        UploadTooLargeError: (413, "upload too large: {} (VINR_MAX_UPLOAD_BYTES)"),
        UploadStalledError: (408, "upload stalled: {} (VINR_UPLOAD_IDLE_TIMEOUT)"),
        UploadMalformedError: (400, "{}"),
        UploadMissingError: (422, "{}"),
        VinrError: (422, "{}"),
    }
    for kind, (status, template) in statuses.items():
        if isinstance(exc, kind):
            return HTTPException(status, person_text(redact(template.format(exc), folder)))
    if isinstance(exc, ClientDisconnect):  # the server stopped reading: the client left, or its framing broke
        return HTTPException(400, "the upload ended before its body was complete")
    if isinstance(exc, HTTPException):
        return HTTPException(exc.status_code, redact(str(exc.detail), folder), headers=exc.headers)
    return exc


def wants_stream(wait: bool, accept: str | None) -> bool:
    """``?wait=true`` or ``Accept: video/mp4``: answer with the video as it is made."""
    return wait or bool(accept and "video/mp4" in accept)
