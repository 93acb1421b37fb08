"""The web page at ``/``: static files inside the package, no build step, nothing loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parents[2] / "static"
"""The page's files (``service/static``)."""
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
"""The file kinds served, by suffix."""
POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""Content-Security-Policy of the page: everything from this server, pictures also from data: and blob: URLs."""


def static_file(name: str) -> FileResponse:
    """One of the page's files by name (no paths: nothing outside ``service/static`` can be asked for)."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in TYPES or not path.is_file():
        raise HTTPException(404, f"no file {name!r}")
    headers = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return FileResponse(path, media_type=TYPES[path.suffix], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    """The page."""
    return static_file("index.html")


@router.get("/static/{name}")
async def asset(name: str) -> FileResponse:
    """The page's scripts and styles."""
    return static_file(name)
