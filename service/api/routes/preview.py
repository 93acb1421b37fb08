"""Looking before a job: ``POST /preview`` (one output frame at once, as a PNG, and the bicubic frame to
compare), ``POST /probe`` (what a video holds), ``GET /limits`` (what this server accepts) and ``GET /models``
(the served checkpoints, from their cards)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from models import registry
from models.registry import DEFAULT_MODEL
from service.api.deps import OwnerDep, SettingsDep, owned_job
from service.api.routes.upsample import SizeAndRate
from service.api.submit import upload_body, upload_error
from service.schemas import InputInfo, Limits, ModelInfo, PreviewOut, Problem
from service.storage import TooManyUploadsError, receive_upload, upload_key
from worker.folders import JobFolder
from worker.media import VideoReader
from worker.planning import MAX_FPS, MAX_SCALE, MAX_SIDE
from worker.preview import Preview, png_bytes

router = APIRouter(tags=["upsample"])
MAX_AT = 1e6
"""Largest preview time accepted, seconds (the input's duration limit is lower)."""


def preview_headers(preview: Preview) -> dict[str, str]:
    return {
        "X-Preview-Index": str(preview.index),
        "X-Preview-Time": f"{preview.time:.6f}",
        "X-Output-Size": f"{preview.plan.width}x{preview.plan.height}",
        "Cache-Control": "no-store",
    }


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def preview_body(preview: Preview, compare: str | None) -> PreviewOut:
    return PreviewOut(
        index=preview.index,
        time=preview.time,
        width=preview.plan.width,
        height=preview.plan.height,
        fps=float(preview.plan.fps),
        frames=preview.plan.frames,
        image=data_url(png_bytes(preview.image)),
        compare=data_url(png_bytes(preview.bicubic())) if compare else None,
    )


@contextlib.asynccontextmanager
async def temporary_upload(request: Request, settings, owner: str) -> AsyncIterator[Path]:
    """The request's video in a private folder of its own, removed afterwards; errors as ``POST /upsample``'s."""
    previewer = request.app.state.previews
    try:
        with request.app.state.uploads.slot(upload_key(request, owner)):
            folder = await run_in_threadpool(previewer.folder)
            try:
                source = JobFolder(folder).input
                await receive_upload(
                    request, source, settings.max_upload_bytes, settings.upload_idle_timeout, settings.upload_min_rate
                )
                yield source
            except BaseException as exc:
                error = upload_error(exc, folder)
                if error is exc:
                    raise
                raise error from exc
            finally:
                await run_in_threadpool(shutil.rmtree, folder, True)
    except TooManyUploadsError as exc:
        raise HTTPException(429, f"too many uploads: {exc}", headers={"Retry-After": "5"}) from exc


@router.post(
    "/preview",
    responses={
        200: {
            "content": {"image/png": {}, "application/json": {"schema": {"$ref": "#/components/schemas/PreviewOut"}}},
            "description": "the frame as a PNG; with `compare`, JSON with it and the compared frame as data URLs",
        },
        **{code: {"model": Problem} for code in (400, 401, 404, 408, 409, 413, 422, 429, 503, 504)},
    },
    openapi_extra=upload_body("the video"),
)
async def preview(
    request: Request,
    settings: SettingsDep,
    owner: OwnerDep,
    output: SizeAndRate,
    at: Annotated[float, Query(ge=0, le=MAX_AT, description="seconds from the start; the nearest output frame")] = 0.0,
    compare: Annotated[
        Literal["bicubic"] | None, Query(description="also the input frame nearest it, upscaled by this filter")
    ] = None,
    job: Annotated[
        str | None,
        Query(description="one of your jobs that asked for adapt: render with the weights adapted to its video"),
    ] = None,
):
    """Render the output frame of an upsample nearest `at` seconds, at once, on the gateway."""
    weights = None
    if job is not None:
        files = await owned_job(job, request, settings, owner)
        weights = files.adapted
        if not weights.is_file():
            raise HTTPException(
                409,
                f"job {job} has no adapted weights: it did not ask for adapt, is still adapting, or kept the "
                "served weights (its progress says which)",
            )
    async with temporary_upload(request, settings, owner) as source:
        try:
            shot = await asyncio.wait_for(
                request.app.state.previews.render_async(source, output, at, weights), settings.preview_timeout
            )
        except asyncio.TimeoutError:
            raise HTTPException(
                504, f"the preview took more than {settings.preview_timeout:g} s (VINR_PREVIEW_TIMEOUT)"
            ) from None
        if compare:
            body = await run_in_threadpool(preview_body, shot, compare)
            return JSONResponse(body.model_dump(), headers=preview_headers(shot))
        png = png_bytes(shot.image)
    return Response(png, media_type="image/png", headers=preview_headers(shot))


@router.post(
    "/probe",
    response_model=InputInfo,
    responses={code: {"model": Problem} for code in (400, 401, 408, 413, 422, 429)},
    openapi_extra=upload_body("the video"),
)
async def probe(request: Request, settings: SettingsDep, owner: OwnerDep) -> InputInfo:
    """What a video holds: size, frame rate, duration, audio (the page shows it before any job)."""
    async with temporary_upload(request, settings, owner) as source:
        info = await run_in_threadpool(read_info, source)
    return InputInfo(**{**dataclasses.asdict(info), "fps": float(info.fps)})


def read_info(path: Path):
    with VideoReader(path) as reader:
        return reader.info


@router.get("/limits", response_model=Limits)
async def limits(settings: SettingsDep) -> Limits:
    """What this server accepts; public, so a page can show it before an API key is entered."""
    return Limits(
        max_scale=MAX_SCALE,
        max_fps=MAX_FPS,
        max_side=MAX_SIDE,
        max_upload_bytes=settings.max_upload_bytes,
        max_input_seconds=settings.max_input_seconds,
        max_output_pixels=settings.max_output_pixels,
        max_output_frames=settings.max_output_frames,
        max_output_work=settings.max_output_work,
        max_adapt_seconds=settings.max_adapt_seconds,
        api_key_required=bool(settings.api_keys),
        models=registry.served((settings.models_dir,) if settings.models_dir else ()),
        default_model=DEFAULT_MODEL,
    )


@router.get("/models", response_model=list[ModelInfo])
async def served_models(settings: SettingsDep) -> list[ModelInfo]:
    """The served checkpoints with what their cards say of them: size, quality on the held-out carphone clip,
    output rate on a CPU; public, as ``/limits`` is."""
    search = (settings.models_dir,) if settings.models_dir else ()
    return [
        ModelInfo(name=name, default=name == DEFAULT_MODEL, **registry.card_summary(name, search))
        for name in registry.served(search)
    ]
