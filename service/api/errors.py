"""How the gateway answers errors: one JSON shape ``{"detail": str}``, 503 while Redis is away, full 405s.

``install(app)`` registers the handlers and the OpenAPI schema that documents what they send.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)

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


def install(app: FastAPI) -> None:
    """Register the error handlers and the schema that documents them."""
    # Starlette types a handler as taking any Exception; each of these takes the one it is registered for
    app.add_exception_handler(RedisError, redis_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]  # FastAPI's documented override
