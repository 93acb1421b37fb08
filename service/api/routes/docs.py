"""``/docs``: Swagger UI from the files of the ``fastapi-offline`` package, so the page works without the
internet (FastAPI's own loads them from a CDN)."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)
ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
"""Swagger UI's script, style sheet and icon."""
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
"""The files served, with their types."""


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI over ``/openapi.json``."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="vinr API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon.png",
    )


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    """One of Swagger UI's files, by name."""
    if name not in FILES:
        raise HTTPException(404, f"no file {name!r}")
    return FileResponse(ASSETS / name, media_type=FILES[name], headers={"Cache-Control": "max-age=86400"})
