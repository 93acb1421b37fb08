"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from service.api.deps import BackendDep, metrics_access
from service.schemas import Health, Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The gateway process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(backend: BackendDep):
    """Redis is reachable and at least one worker is alive (always, in embedded mode)."""
    ready, detail = await run_in_threadpool(backend.ready)
    body = Health(status="ok" if ready else "unavailable", detail=detail)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(metrics_access)],
    responses={401: {"model": Problem}, 503: {"model": Problem}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text: jobs by state, queue depth, output frames per second, live workers, job
    durations (histogram by kind and end state) and request latency (histogram by route)."""
    body = await run_in_threadpool(request.app.state.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
