"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
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
async def metrics(backend: BackendDep) -> str:
    """Prometheus text: jobs by state, queue depth, output frames per second, live workers."""
    m = await run_in_threadpool(backend.metrics)
    lines = ["# HELP vinr_jobs Jobs by state.", "# TYPE vinr_jobs gauge"]
    lines += [f'vinr_jobs{{state="{s}"}} {m[s]}' for s in ("queued", "started", "finished", "failed", "canceled")]
    lines += [
        "# HELP vinr_queue_depth Jobs waiting for a worker.",
        "# TYPE vinr_queue_depth gauge",
        f"vinr_queue_depth {m['queued']}",
        "# HELP vinr_output_frames_per_second Output frames per second being made, all jobs.",
        "# TYPE vinr_output_frames_per_second gauge",
        f"vinr_output_frames_per_second {m['fps']:.3f}",
        "# HELP vinr_workers Live workers.",
        "# TYPE vinr_workers gauge",
        f"vinr_workers {m['workers']}",
    ]
    return "\n".join(lines) + "\n"
