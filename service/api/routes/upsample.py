"""``POST /upsample``: a video in, a job (or the streamed result) out."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from models import registry
from models.registry import DEFAULT_MODEL
from service.api.deps import BackendDep, OwnerDep, SettingsDep
from service.api.submit import submit, upload_body, upload_responses, wants_stream
from service.queue import EmbeddedBackend
from service.schemas import JobOut
from service.settings import Settings
from worker.adapting import MAX_ADAPT_SECONDS
from worker.errors import VinrError
from worker.jobs import upsample_request
from worker.media import VideoReader
from worker.planning import MAX_FPS, MAX_SCALE, MAX_SIDE, MAX_SLOWMO, plan_output

router = APIRouter(tags=["upsample"])
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
"""Served model names (paths are never accepted over HTTP)."""


def check_budget(path, params: dict, settings: Settings, local: bool = True) -> dict:
    """Probe the upload and check the planned output against the configured limits (VinrError if not);
    ``local``: jobs run in this process, so an encoder forced here must open here. Returns the planned
    ``output`` (size, rate, frames) for the job's record."""
    request = upsample_request(params, "cpu", encoder=settings.encoder)
    request.output.encoder  # noqa: B018 - raises ParameterError for an unknown codec
    with VideoReader(path) as reader:
        info = reader.info
    if info.duration > settings.max_input_seconds:
        raise VinrError(
            f"the input lasts {info.duration:.1f} s; VINR_MAX_INPUT_SECONDS is {settings.max_input_seconds:g}"
        )
    plan = plan_output(info, request, check_nvenc=local)
    problem = settings.output_limit_error(plan.width, plan.height, plan.frames)
    if problem:
        raise VinrError(problem)
    return {"output": {"width": plan.width, "height": plan.height, "fps": float(plan.fps), "frames": plan.frames}}


def size_and_rate(
    settings: SettingsDep,
    scale: Annotated[float | None, Query(ge=1, le=MAX_SCALE, description="spatial factor in [1, 8], e.g. 3.5")] = None,
    width: Annotated[int | None, Query(gt=0, le=MAX_SIDE)] = None,
    height: Annotated[int | None, Query(gt=0, le=MAX_SIDE)] = None,
    fps: Annotated[float | None, Query(gt=0, le=MAX_FPS, description="output frame rate, e.g. 120")] = None,
    time_factor: Annotated[
        float | None, Query(gt=0, le=MAX_FPS, description="output rate as a multiple of the input's")
    ] = None,
    slowmo: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_SLOWMO,
            description="slow motion: the input shown this many times slower, at the rate fps/time_factor give "
            "(the input's by default)",
        ),
    ] = None,
    slowmo_audio: Annotated[
        Literal["drop", "keep"], Query(description="with slowmo: drop the audio, or keep it slowed (pitch kept)")
    ] = "drop",
    model: Annotated[str, Query(description="a served model name")] = DEFAULT_MODEL,
) -> dict:
    """The output size, rate and model of an upsample or a preview (422 for a model not served)."""
    search = (settings.models_dir,) if settings.models_dir else ()
    if not MODEL_NAME.match(model) or model not in registry.served(search):
        raise HTTPException(422, f"unknown model {model!r}; served: {registry.served(search)}")
    timing: dict[str, object] = {"fps": fps, "time_factor": time_factor}
    if slowmo is not None:
        timing |= {"slowmo": slowmo, "slowmo_audio": slowmo_audio}
    return {"scale": scale, "width": width, "height": height, **timing, "model": model}


SizeAndRate = Annotated[dict, Depends(size_and_rate)]


@router.post(
    "/upsample",
    status_code=202,
    response_model=JobOut,
    responses=upload_responses(),
    openapi_extra=upload_body("the video"),
)
async def upsample(
    request: Request,
    settings: SettingsDep,
    backend: BackendDep,
    owner: OwnerDep,
    output: SizeAndRate,
    codec: Annotated[Literal["h264", "hevc", "av1", "vp9"], Query()] = "h264",
    crf: Annotated[int | None, Query(ge=0, le=63)] = None,
    encoder: Annotated[
        Literal["auto", "cpu", "nvenc"] | None,
        Query(
            description="auto: NVENC where the job renders on CUDA and it opens; cpu; nvenc (422 or a failed job "
            "where it cannot open); unset: the workers' VINR_ENCODER"
        ),
    ] = None,
    adapt: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_ADAPT_SECONDS,
            description="first fine-tune the model on this video for about this many seconds (at most the "
            "server's VINR_MAX_ADAPT_SECONDS); the adapted weights are used where they beat the served ones on "
            "held-out windows of the video",
        ),
    ] = None,
    wait: Annotated[bool, Query(description="stream the result back in this response")] = False,
    accept: Annotated[str | None, Header()] = None,
):
    """Upload a video to upsample: 202 with the job, or the fragmented MP4 as it is made."""
    params = {**output, "codec": codec, "crf": crf}
    if adapt is not None:
        cap = settings.max_adapt_seconds
        if adapt > cap:  # the server's own cap, worded and located as a validation error
            error = {"loc": ("query", "adapt"), "input": adapt, "type": "less_than_equal", "ctx": {"le": cap}}
            if not cap:
                error = {**error, "type": "value_error", "msg": "this server has adaptation turned off"}
            raise RequestValidationError([error])
        params["adapt"] = adapt
    if encoder is not None:
        params["encoder"] = encoder
    return await submit(
        request,
        settings,
        backend,
        owner,
        "upsample",
        params,
        lambda path: check_budget(path, params, settings, isinstance(backend, EmbeddedBackend)),
        wants_stream(wait, accept),
    )
