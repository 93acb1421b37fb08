"""``POST /decode``: a neural video bitstream in (its header checked before queueing), a video out."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request

from models.bitstream import container
from models.dnerv.decode import read_config
from service.api.deps import BackendDep, OwnerDep, SettingsDep
from service.api.submit import submit, upload_body, upload_responses, wants_stream
from service.schemas import JobOut
from worker.decoding import parse_range

router = APIRouter(tags=["decode"])
DECODERS = {"nrff", "dnerv"}
"""Codecs this server decodes."""
FRAMES = re.compile(r"^\d*:\d*$")


def check_bitstream(path, frames: str | None, video: str | None) -> container.Header:
    """Parse the upload's container (limits, every section's CRC), check ``video`` and ``frames``."""
    data = path.read_bytes()
    if data[:4] != container.MAGIC:
        raise HTTPException(415, "unsupported format: not a vinr bitstream (magic 'VINR')")
    try:
        stream = container.parse(data)
        count = stream.header.frames
        if stream.header.codec == "dnerv":
            videos = read_config(stream.sections.get("CONF", b""), stream.header)["videos"]
            names = [v["name"] for v in videos]
            if video is None:
                chosen = 0
            elif video in names:
                chosen = names.index(video)
            elif video.isdigit() and int(video) < len(names):
                chosen = int(video)
            else:
                raise HTTPException(422, f"no video {video!r} in the library; it holds {names}")
            count = videos[chosen]["frames"]
    except container.BitstreamError as exc:
        raise HTTPException(422, f"malformed bitstream: {exc}") from exc
    if stream.header.codec not in DECODERS:
        raise HTTPException(415, f"unsupported codec {stream.header.codec!r}; this server decodes {sorted(DECODERS)}")
    parse_range(frames, count)  # ParameterError: 422
    return stream.header


@router.post(
    "/decode",
    status_code=202,
    response_model=JobOut,
    responses=upload_responses(415),
    openapi_extra=upload_body("the bitstream"),
)
async def decode(
    request: Request,
    settings: SettingsDep,
    backend: BackendDep,
    owner: OwnerDep,
    frames: Annotated[str | None, Query(description="frame range START:STOP (half-open)")] = None,
    video: Annotated[str | None, Query(max_length=200, description="D-NeRV: a video's name or index")] = None,
    codec: Annotated[Literal["h264", "hevc", "av1", "vp9"], Query()] = "h264",
    crf: Annotated[int | None, Query(ge=0, le=63)] = None,
    wait: Annotated[bool, Query(description="stream the result back in this response")] = False,
    accept: Annotated[str | None, Header()] = None,
):
    """Upload a neural bitstream (.nrff, or a .dnerv library and a video) to decode: 202 with the job, or the MP4."""
    if frames is not None and not FRAMES.match(frames):
        raise HTTPException(422, f"frames must be START:STOP, got {frames!r}")
    params = {"frames": frames, "video": video, "codec": codec, "crf": crf}
    return await submit(
        request,
        settings,
        backend,
        owner,
        "decode",
        params,
        lambda path: check_bitstream(path, frames, video),
        wants_stream(wait, accept),
    )
