"""``POST /decode``: a neural video bitstream in (its header checked before queueing), a video out."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request

from models.bitstream import container
from service.api.deps import BackendDep, OwnerDep, SettingsDep
from service.api.submit import submit, upload_body, wants_stream
from service.schemas import JobOut, Problem
from worker.decoding import parse_range

router = APIRouter(tags=["decode"])
DECODERS = {"nrff"}
"""Codecs this server decodes (D-NeRV is recognised by the container but not decoded yet)."""
FRAMES = re.compile(r"^\d*:\d*$")


def check_bitstream(path, frames: str | None) -> container.Header:
    """Parse the upload's container (header limits, every section's CRC); HTTPException if unfit."""
    data = path.read_bytes()
    if data[:4] != container.MAGIC:
        raise HTTPException(415, "unsupported format: not a vinr bitstream (magic 'VINR')")
    try:
        header = container.parse(data).header
    except container.BitstreamError as exc:
        raise HTTPException(422, f"malformed bitstream: {exc}") from exc
    if header.codec not in DECODERS:
        raise HTTPException(415, f"unsupported codec {header.codec!r}; this server decodes {sorted(DECODERS)}")
    parse_range(frames, header.frames)  # ParameterError: 422
    return header


@router.post(
    "/decode",
    status_code=202,
    response_model=JobOut,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "with Accept: video/mp4 or wait=true"},
        401: {"model": Problem},
        413: {"model": Problem},
        415: {"model": Problem},
        422: {"model": Problem},
    },
    openapi_extra=upload_body("the bitstream"),
)
async def decode(
    request: Request,
    settings: SettingsDep,
    backend: BackendDep,
    owner: OwnerDep,
    frames: Annotated[str | None, Query(description="frame range START:STOP (half-open)")] = None,
    codec: Annotated[Literal["h264", "hevc", "av1", "vp9"], Query()] = "h264",
    crf: Annotated[int | None, Query(ge=0, le=63)] = None,
    wait: Annotated[bool, Query(description="stream the result back in this response")] = False,
    accept: Annotated[str | None, Header()] = None,
):
    """Upload a neural video bitstream (.nrff) to decode: 202 with the job, or the MP4 as it is made."""
    if frames is not None and not FRAMES.match(frames):
        raise HTTPException(422, f"frames must be START:STOP, got {frames!r}")
    params = {"frames": frames, "codec": codec, "crf": crf}
    return await submit(
        request,
        settings,
        backend,
        owner,
        "decode",
        params,
        lambda path: check_bitstream(path, frames),
        wants_stream(wait, accept),
    )
