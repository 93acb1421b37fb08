"""Settings, job backend and caller identity as FastAPI dependencies."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from service.queue import EmbeddedBackend, RQBackend
from service.settings import Settings
from service.storage import JobFiles


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_backend(request: Request) -> RQBackend | EmbeddedBackend:
    return request.app.state.backend


def get_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """A stable id of the caller's API key (``""`` when the service has no keys)."""
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


def metrics_access(settings: Annotated[Settings, Depends(get_settings)], request: Request) -> None:
    """/metrics needs a key when the service has keys, unless VINR_METRICS_PUBLIC is set."""
    if not settings.metrics_public:
        get_owner(settings, request.headers.get("authorization"), request.headers.get("x-api-key"))


SettingsDep = Annotated[Settings, Depends(get_settings)]
BackendDep = Annotated[RQBackend | EmbeddedBackend, Depends(get_backend)]
OwnerDep = Annotated[str, Depends(get_owner)]


def owned_job(job_id: str, settings: SettingsDep, owner: OwnerDep) -> JobFiles:
    """The caller's job folder; 404 for unknown ids and for other keys' jobs alike."""
    try:
        files = JobFiles(settings.data_dir, job_id)
    except KeyError:
        raise HTTPException(404, f"no job {job_id!r}") from None
    meta = files.meta()
    if meta is None or meta.get("owner", "") != owner:
        raise HTTPException(404, f"no job {job_id!r}")
    return files


JobDep = Annotated[JobFiles, Depends(owned_job)]
