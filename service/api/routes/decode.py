"""``POST /decode``: a neural video bitstream in (its header checked before queueing), a video out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request

from models.bitstream import container
from models.bitstream.container import BitstreamError
from models.probe import Probe, UnknownVideoError, probe_file
from service.api.deps import BackendDep, OwnerDep, SettingsDep
from service.api.submit import submit, upload_body, upload_responses, wants_stream
from service.schemas import JobOut
from service.settings import Settings
from worker.decoding import parse_range, read_bitstream_head
from worker.errors import VinrError

router = APIRouter(tags=["decode"])


def check_bitstream(path: Path, frames: str | None, video: str | None, settings: Settings) -> Probe:
    """Verify the upload (bounded memory), the chosen ``video`` and ``frames``, and the output limits."""
    head = read_bitstream_head(path)
    if head[: len(container.MAGIC)] != container.MAGIC:
        raise HTTPException(415, "unsupported format: not a vinr bitstream (magic 'VINR')")
    try:
        header, _ = container.parse_header(head)
        problem = settings.output_limit_error(header.width, header.height, 1)  # before any decoding
        if problem:
            raise VinrError(problem)
        probe = probe_file(path, video)
    except BitstreamError as exc:
        raise HTTPException(422, f"malformed bitstream: {exc}") from exc
    except UnknownVideoError as exc:
        raise HTTPException(422, str(exc)) from exc
    start, stop = parse_range(frames, probe.frames)  # ParameterError: 422
    problem = settings.output_limit_error(probe.width, probe.height, stop - start)
    if problem:
        raise VinrError(problem)
    return probe


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
        lambda path: check_bitstream(path, frames, video, settings),
        wants_stream(wait, accept),
    )
