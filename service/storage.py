"""Job folders on the shared volume: uploads streamed in with a size limit, results streamed out.

A job folder ``DATA_DIR/jobs/ID/`` holds ``job.json`` (kind, owner, parameters, creation time),
``input`` (the upload) and ``result.mp4`` (a fragmented MP4 written while the job runs).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
"""What a job id looks like (anything else is refused before touching the disk)."""
CHUNK = 1 << 20
"""Bytes per read when streaming a file out."""
POLL = 0.25
"""Seconds between looks at a growing result file."""


class UploadTooLargeError(Exception):
    """The upload passed the configured size limit."""


class UploadMissingError(Exception):
    """No file in the request."""


def new_job_id() -> str:
    """An unguessable id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


class JobFiles:
    """Paths of one job's folder."""

    def __init__(self, data_dir: Path, job_id: str):
        if not JOB_ID.match(job_id):
            raise KeyError(job_id)
        self.id = job_id
        self.dir = Path(data_dir) / "jobs" / job_id
        self.input = self.dir / "input"
        self.result = self.dir / "result.mp4"
        self.meta_path = self.dir / "job.json"

    def create(self, meta: dict) -> None:
        self.dir.mkdir(parents=True)
        self.write_meta({**meta, "id": self.id, "created_at": time.time()})

    def write_meta(self, meta: dict) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.meta_path)

    def meta(self) -> dict | None:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def delete(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


async def receive_upload(request: Request, path: Path, limit: int) -> int:
    """Stream the request's video (multipart field ``file`` or the raw body) to ``path``; returns bytes.

    Nothing is held whole in memory or spooled elsewhere; past ``limit`` bytes it stops with
    UploadTooLargeError and removes what it wrote.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise UploadTooLargeError(f"the upload is {int(declared)} bytes; the limit is {limit}")
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    written = 0
    with path.open("wb") as sink:

        def write(data: bytes) -> None:
            nonlocal written
            written += len(data)
            if written > limit:
                raise UploadTooLargeError(f"the upload passed the limit of {limit} bytes")
            sink.write(data)

        try:
            if content_type == b"multipart/form-data":
                if not await receive_multipart(request, params.get(b"boundary", b""), write):
                    raise UploadMissingError("no multipart field named 'file'")
            else:
                async for chunk in request.stream():
                    write(chunk)
        except BaseException:
            sink.close()
            path.unlink(missing_ok=True)
            raise
    if written == 0:
        path.unlink(missing_ok=True)
        raise UploadMissingError("the request has no video: send it as the body or as the multipart field 'file'")
    return written


async def receive_multipart(request: Request, boundary: bytes, write: Callable[[bytes], None]) -> bool:
    """Feed a multipart body to python-multipart, writing the ``file`` part's bytes; True if found."""
    state = {"header": b"", "headers": {}, "is_file": False, "found": False}

    def on_part_begin():
        state.update(header=b"", headers={}, is_file=False)

    def on_header_field(data, start, end):
        state["header"] = data[start:end].lower()

    def on_header_value(data, start, end):
        key = state["header"]
        state["headers"][key] = state["headers"].get(key, b"") + data[start:end]

    def on_headers_finished():
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["is_file"] = disposition.get(b"name") == b"file"
        state["found"] = state["found"] or state["is_file"]

    def on_part_data(data, start, end):
        if state["is_file"]:
            write(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
    }
    parser = MultipartParser(boundary, callbacks)
    async for chunk in request.stream():
        parser.write(chunk)
    parser.finalize()
    return state["found"]


async def follow(path: Path, finished: Callable[[], Awaitable[bool]], timeout: float) -> AsyncIterator[bytes]:
    """Yield a file's bytes as it grows, until ``finished()`` and everything written has been sent."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if await finished() or time.monotonic() > deadline:
            return
        await asyncio.sleep(POLL)
    with path.open("rb") as source:
        while True:
            done = await finished()  # asked before reading, so nothing written after it is missed
            chunk = source.read(CHUNK)
            if chunk:
                yield chunk
            elif done or time.monotonic() > deadline:
                return
            else:
                await asyncio.sleep(POLL)


def expired_jobs(data_dir: Path, ttl: float) -> list[str]:
    """Ids of job folders created more than ``ttl`` seconds ago."""
    jobs = Path(data_dir) / "jobs"
    if not jobs.is_dir():
        return []
    cutoff = time.time() - ttl
    expired = []
    for folder in jobs.iterdir():
        meta = JobFiles(data_dir, folder.name).meta() if JOB_ID.match(folder.name) else None
        if meta is not None and meta.get("created_at", 0) < cutoff:
            expired.append(folder.name)
    return expired
