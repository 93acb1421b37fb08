"""Settings, job backend and caller identity as FastAPI dependencies."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.queue import EmbeddedBackend, RQBackend
from service.settings import Settings
from service.storage import JobFiles

# The dependencies are coroutines: FastAPI runs a plain function in its thread pool, a hop that cost a status
# read more than its own work.


def query_names(dependant: Dependant) -> set[str]:
    """The query parameters an endpoint takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= query_names(dependency)
    return names


async def known_query(request: Request) -> None:
    """422 naming a query parameter the endpoint does not take: a misspelt one (``scael=3``) would
    otherwise be ignored and the request served with the default."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise HTTPException(422, f"unknown query parameter {unknown[0]!r}; {route.path} takes: {takes}")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_backend(request: Request) -> RQBackend | EmbeddedBackend:
    return request.app.state.backend


async def get_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """A stable id of the caller's API key (``""`` when the service has no keys)."""
    return owner_of(settings, authorization, x_api_key)


def owner_of(settings: Settings, authorization: str | None, x_api_key: str | None) -> str:
    """``get_owner``'s answer (401 for a missing or wrong key when the service has keys)."""
    if not settings.api_keys:
        return ""
    key = x_api_key or (authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None)
    # compared as bytes: a header may hold any Latin-1 text, and compare_digest refuses non-ASCII str
    given = key.encode("utf-8") if key else b""
    if not given or not any(hmac.compare_digest(given, k.encode("utf-8")) for k in settings.api_keys):
        raise HTTPException(
            401,
            "a valid API key is required (Authorization: Bearer KEY or X-API-Key)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return hashlib.sha256(given).hexdigest()[:32]


async def metrics_access(settings: Annotated[Settings, Depends(get_settings)], request: Request) -> None:
    """/metrics needs a key when the service has keys, unless VINR_METRICS_PUBLIC is set."""
    if not settings.metrics_public:
        owner_of(settings, request.headers.get("authorization"), request.headers.get("x-api-key"))


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendDep = Annotated[RQBackend | EmbeddedBackend, Depends(get_backend)]
OwnerDep = Annotated[str, Depends(get_owner)]


async def owned_job(job_id: str, request: Request, settings: SettingsDep, owner: OwnerDep) -> JobFiles:
    """The caller's job folder; 404 for unknown ids and for other keys' jobs alike."""
    try:
        files = JobFiles(settings.data_dir, job_id)
    except KeyError:
        raise HTTPException(404, f"no job {job_id!r}") from None
    meta = await request.app.state.metas.get(files)
    if meta is None or meta.get("owner", "") != owner:
        raise HTTPException(404, f"no job {job_id!r}")
    files.known = meta
    return files


JobDep = Annotated[JobFiles, Depends(owned_job)]
