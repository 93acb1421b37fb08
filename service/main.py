"""The FastAPI app factory: ``create_app()`` wires settings, the job backend and the routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.api.routes import decode, health, jobs, upsample
from service.queue import make_backend
from service.settings import Settings
from service.storage import JobFiles, UploadSlots, expired_jobs

log = logging.getLogger(__name__)

CLEANUP_INTERVAL = 600
"""Seconds between sweeps of expired job folders."""


def sweep(app: FastAPI) -> None:
    """Delete job folders older than the result TTL whose jobs are over (or forgotten)."""
    settings, backend = app.state.settings, app.state.backend
    for job_id in expired_jobs(settings.data_dir, max(settings.result_ttl, settings.failure_ttl)):
        state = backend.state(job_id)
        if state is None or state.done:
            JobFiles(settings.data_dir, job_id).delete()


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
    tasks = [asyncio.create_task(every(CLEANUP_INTERVAL, sweep, app))]
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


RETRY_AFTER = "5"
"""Seconds a client is told to wait (Retry-After) while Redis is unreachable."""


async def redis_unavailable(request: Request, exc: RedisError) -> JSONResponse:
    """Redis down: 503 with Retry-After, never a 500."""
    log.warning("%s %s: redis unreachable: %s", request.method, request.url.path, exc)
    body = {"detail": "the job queue (Redis) is unreachable; try again shortly"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": RETRY_AFTER})


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A parameter that fails validation: 422 with one readable line, in the same shape as every error."""
    parts = []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ())]
        name = f"{where[0]} parameter {'.'.join(where[1:])!r}" if len(where) > 1 else ".".join(where) or "request"
        parts.append(f"{name}: {error.get('msg', 'invalid')}")
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""HTTP methods a 405's ``Allow`` may list."""


def path_methods(routes, scope) -> set[str]:
    """Every method some route serves at the scope's path (each method tried against every route)."""
    return {m for m in METHODS if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in routes)}


async def http_error(request: Request, exc: StarletteHTTPException):
    """Starlette's errors, with a 405's ``Allow`` listing every method of the path (not just one route's)."""
    if exc.status_code == 405:
        allowed = path_methods(request.app.routes, request.scope)
        if allowed:
            exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(sorted(allowed))})
    return await http_exception_handler(request, exc)


def openapi_schema(app: FastAPI) -> dict:
    """FastAPI's schema with every 422 documented as what the service sends: ``Problem`` (``{"detail": str}``)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operations in schema["paths"].values():
            for operation in operations.values():
                if "422" in operation.get("responses", {}):
                    operation["responses"]["422"]["content"] = problem
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway: RQ when VINR_REDIS_URL is set, else an in-process worker."""
    app = FastAPI(
        title="vinr", version="0.1.0", lifespan=lifespan, description="Neural video upsampling (VideoINR) as a service."
    )
    app.state.settings = settings = settings or Settings()
    app.state.backend = make_backend(settings)
    app.state.uploads = UploadSlots(settings.max_concurrent_uploads, settings.max_concurrent_uploads_per_key)
    app.add_exception_handler(RedisError, redis_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for module in (upsample, decode, jobs, health):
        app.include_router(module.router)
    app.openapi = lambda: openapi_schema(app)
    return app
