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


BOUNDS = {
    "less_than_equal": ("le", "at most"),
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than": ("lt", "less than"),
}
"""Pydantic's bound errors: the context key of the bound and how it reads."""


def shown(value) -> str:
    """A parameter's value as a message quotes it (long ones cut; 1000.0 as 1000)."""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def error_words(name: str, error: dict) -> str:
    """One validation error as a person reads it: ``scale must be at most 8, got 100``."""
    kind, ctx, got = error.get("type", ""), error.get("ctx") or {}, error.get("input")
    if kind in BOUNDS and BOUNDS[kind][0] in ctx:
        key, words = BOUNDS[kind]
        return f"{name} must be {words} {shown(ctx[key])}, got {shown(got)}"
    if kind == "missing":
        return f"{name} is required"
    if kind in ("float_parsing", "int_parsing", "float_type", "int_type"):
        return f"{name} must be a number, got {shown(got)!r}"
    if kind == "int_from_float":
        return f"{name} must be a whole number, got {shown(got)}"
    if kind == "finite_number":
        return f"{name} must be a finite number, got {shown(got)}"
    if kind == "literal_error" and "expected" in ctx:
        return f"{name} must be {ctx['expected']}, got {shown(got)!r}"
    return f"{name}: {error.get('msg', 'invalid')}"


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A parameter that fails validation: 422 with one readable line naming the parameter, in the same shape
    as every error (``field``: the first parameter at fault, for a page to show the message beside it)."""
    parts, fields = [], []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ())]
        name = ".".join(where[1:]) if len(where) > 1 else ".".join(where) or "request"
        fields.append(name)
        parts.append(error_words(name, error))
    body = {"detail": "; ".join(parts) or "invalid request"}
    if fields:
        body["field"] = fields[0]
    return JSONResponse(body, status_code=422)


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
