"""The FastAPI app factory: ``create_app()`` wires settings, the job backend and the routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from service.api import errors
from service.api.deps import known_query
from service.api.routes import decode, docs, health, jobs, page, preview, upsample
from service.live import live_joins
from service.metrics import LatencyMiddleware, Metrics
from service.previews import Previewer
from service.queue import make_backend
from service.settings import Settings
from service.storage import JobFiles, JobMetas, UploadSlots, expired_jobs, job_folders, remove_dead_uploads

log = logging.getLogger(__name__)

CLEANUP_INTERVAL = 600
"""Seconds between sweeps of expired job folders."""


def sweep(app: FastAPI) -> None:
    """Delete job folders older than the result TTL whose jobs are over (or forgotten), and the segment
    files of joined segmented jobs that no client is streaming."""
    settings, backend = app.state.settings, app.state.backend
    for job_id in expired_jobs(settings.data_dir, max(settings.result_ttl, settings.failure_ttl)):
        state = backend.state(job_id)
        if state is None or state.done:
            JobFiles(settings.data_dir, job_id).delete()
    for files, _ in job_folders(settings.data_dir):  # a segmented job's segments, once joined and not streamed
        if files.segments.is_dir() and not live_joins(files):
            state = backend.state(files.id)
            if state is None or state.done:
                shutil.rmtree(files.segments, ignore_errors=True)
    app.state.previews.sweep()
    remove_dead_uploads(settings.data_dir, settings.upload_idle_timeout)


def preload_previews(app: FastAPI) -> None:
    """The preview model, loaded while the gateway starts (a failure only makes the first preview slower)."""
    try:
        app.state.previews.preload()
    except Exception as exc:
        log.warning("could not preload the preview model: %s", exc)


async def every(seconds: float, task, *args) -> None:
    """Run ``task(*args)`` in a thread every ``seconds``, forever; a failure is logged, not fatal."""
    while True:
        try:
            await run_in_threadpool(task, *args)
        except Exception as exc:  # Redis away, a folder vanishing under us: try again next time
            log.warning("%s failed: %s", getattr(task, "__name__", task), exc)
        await asyncio.sleep(seconds)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings, backend = app.state.settings, app.state.backend
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    removed = await run_in_threadpool(remove_dead_uploads, settings.data_dir, settings.upload_idle_timeout, True)
    if removed:
        log.warning("removed %d upload(s) a stopped gateway left incomplete", len(removed))
    tasks = [asyncio.create_task(every(CLEANUP_INTERVAL, sweep, app))]
    tasks.append(asyncio.create_task(run_in_threadpool(preload_previews, app)))
    if hasattr(backend, "recover"):  # a dead worker's job is retried even if nobody is asking about it
        beat = max(0.5, settings.heartbeat_ttl / 4)
        tasks.append(asyncio.create_task(every(beat, backend.recover_in_turn)))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if hasattr(backend, "close"):
        await run_in_threadpool(backend.close)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway: RQ when VINR_REDIS_URL is set, else an in-process worker."""
    app = FastAPI(
        title="vinr",
        version="0.1.0",
        lifespan=lifespan,
        description="Neural video upsampling (VideoINR) as a service.",
        docs_url=None,  # service.api.routes.docs serves Swagger UI from files in the package
        redoc_url=None,
        dependencies=[Depends(known_query)],
    )
    app.state.settings = settings = settings or Settings()
    app.state.backend = make_backend(settings)
    app.state.metas = JobMetas()
    app.state.uploads = UploadSlots(settings.max_concurrent_uploads, settings.max_concurrent_uploads_per_key)
    app.state.previews = Previewer(settings)
    app.state.metrics = Metrics(app.state.backend)
    app.add_middleware(LatencyMiddleware, metrics=app.state.metrics)
    errors.install(app)
    for module in (upsample, preview, decode, jobs, health, page, docs):
        app.include_router(module.router)
    return app
