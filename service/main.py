"""The FastAPI app factory: ``create_app()`` wires settings, the job backend and the routers."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.api.routes import decode, health, jobs, upsample
from service.queue import make_backend
from service.settings import Settings
from service.storage import JobFiles, expired_jobs

CLEANUP_INTERVAL = 600
"""Seconds between sweeps of expired job folders."""


def sweep(app: FastAPI) -> None:
    """Delete job folders older than the result TTL whose jobs are over (or forgotten)."""
    settings, backend = app.state.settings, app.state.backend
    for job_id in expired_jobs(settings.data_dir, max(settings.result_ttl, settings.failure_ttl)):
        state = backend.state(job_id)
        if state is None or state.done:
            JobFiles(settings.data_dir, job_id).delete()


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def sweeper():
        while True:
            await run_in_threadpool(sweep, app)
            await asyncio.sleep(CLEANUP_INTERVAL)

    async def recoverer():  # a dead worker's job is retried even if nobody is asking about it
        while True:
            await asyncio.sleep(app.state.settings.heartbeat_ttl)
            await run_in_threadpool(app.state.backend.recover, True)

    tasks = [asyncio.create_task(sweeper())]
    if hasattr(app.state.backend, "recover"):
        tasks.append(asyncio.create_task(recoverer()))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if hasattr(app.state.backend, "close"):
        await run_in_threadpool(app.state.backend.close)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway: RQ when VINR_REDIS_URL is set, else an in-process worker."""
    app = FastAPI(
        title="vinr", version="0.1.0", lifespan=lifespan, description="Neural video upsampling (VideoINR) as a service."
    )
    app.state.settings = settings or Settings()
    app.state.backend = make_backend(app.state.settings)
    for module in (upsample, decode, jobs, health):
        app.include_router(module.router)
    return app
