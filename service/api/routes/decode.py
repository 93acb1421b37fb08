"""``POST /decode``: a neural video bitstream in (its header checked before queueing), a video out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request

from models.bitstream.container import BitstreamError
from models.probe import (
    FrameRangeError,
    NotABitstreamError,
    OutputLimitError,
    UnknownVideoError,
    check_bitstream,
)
from service.api.deps import BackendDep, OwnerDep, SettingsDep
from service.api.submit import submit, upload_body, upload_responses, wants_stream
from service.schemas import JobOut
from service.settings import Settings

router = APIRouter(tags=["decode"])


def checked_upload(path: Path, frames: str | None, video: str | None, settings: Settings) -> dict:
    """``models.probe.check_bitstream`` on the upload, its errors as 415 / 422; the output it decodes to."""
    try:
        probe = check_bitstream(path, video, frames, settings.output_limit_error)
    except NotABitstreamError as exc:
        raise HTTPException(415, f"unsupported format: {exc}") from exc
    except BitstreamError as exc:
        raise HTTPException(422, f"malformed bitstream: {exc}") from exc
    except (UnknownVideoError, FrameRangeError, OutputLimitError) as exc:
        raise HTTPException(422, str(exc)) from exc
    size = {"width": probe.width, "height": probe.height, "fps": float(probe.fps), "frames": probe.stop - probe.start}
    return {"output": size}


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
    frames: Annotated[
        str | None, Query(pattern=r"^\d*:\d*$", max_length=40, description="frame range START:STOP (half-open)")
    ] = None,
    video: Annotated[str | None, Query(max_length=200, description="D-NeRV: a video's name or index")] = None,
    codec: Annotated[Literal["h264", "hevc", "av1", "vp9"], Query()] = "h264",
    crf: Annotated[int | None, Query(ge=0, le=63)] = None,
    wait: Annotated[bool, Query(description="stream the result back in this response")] = False,
    accept: Annotated[str | None, Header()] = None,
):
    """Upload a neural bitstream (.nrff, or a .dnerv library and a video) to decode: 202 with the job, or the MP4."""
    params = {"frames": frames, "video": video, "codec": codec, "crf": crf}
    return await submit(
        request,
        settings,
        backend,
        owner,
        "decode",
        params,
        lambda path: checked_upload(path, frames, video, settings),
        wants_stream(wait, accept),
    )
