"""``POST /decode``: a neural video bitstream in (its header validated first)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from service.api.deps import OwnerDep, SettingsDep
from service.schemas import JobOut, Problem
from service.storage import JobFiles, UploadMissingError, UploadTooLargeError, new_job_id, receive_upload

router = APIRouter(tags=["decode"])
KNOWN_FORMATS: dict[bytes, str] = {}
"""Bitstream magic -> job kind. Empty until the NRFF / D-NeRV codecs land: every upload gets 415."""


@router.post(
    "/decode",
    status_code=202,
    response_model=JobOut,
    responses={413: {"model": Problem}, 415: {"model": Problem}, 422: {"model": Problem}},
    openapi_extra={
        "requestBody": {
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
)
async def decode(request: Request, settings: SettingsDep, owner: OwnerDep):
    """Upload a neural video bitstream to decode into a video."""
    files = JobFiles(settings.data_dir, new_job_id())
    await run_in_threadpool(files.create, {"kind": "decode", "owner": owner, "params": {}})
    try:
        await receive_upload(request, files.input, settings.max_upload_bytes)
        with files.input.open("rb") as handle:
            magic = handle.read(8)
    except UploadTooLargeError as exc:
        files.delete()
        raise HTTPException(413, f"upload too large: {exc} (VINR_MAX_UPLOAD_BYTES)") from exc
    except UploadMissingError as exc:
        files.delete()
        raise HTTPException(422, str(exc)) from exc
    files.delete()
    kind = next((k for m, k in KNOWN_FORMATS.items() if magic.startswith(m)), None)
    if kind is None:
        raise HTTPException(
            415,
            "unsupported bitstream format: this server decodes no neural bitstream "
            "format yet (NRFF and D-NeRV are planned)",
        )
    raise HTTPException(501, f"decoding {kind} is not implemented")  # unreachable until a format is added
