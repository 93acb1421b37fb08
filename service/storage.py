"""Job folders on the shared volume: uploads streamed in with a size limit, results streamed out.

A job folder ``DATA_DIR/jobs/ID/`` holds ``job.json`` (kind, owner, parameters, creation time),
``input`` (the upload) and ``result.mp4`` (a fragmented MP4 written while the job runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from worker.folders import JOB_ID, JobFolder, jobs_dir

if TYPE_CHECKING:  # python-multipart declares its callbacks' type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

CHUNK = 1 << 20
"""Bytes per read when streaming a file out."""
POLL = 0.25
"""Seconds between looks at a growing result file."""


class UploadTooLargeError(Exception):
    """The upload passed the configured size limit."""


class UploadMissingError(Exception):
    """No file in the request."""


class UploadMalformedError(Exception):
    """The request body is not what its Content-Type says (a broken multipart body)."""


class UploadStalledError(Exception):
    """The client stopped sending the body."""


class TooManyUploadsError(Exception):
    """Too many uploads are being received at once (in all, or for this key)."""


class UploadSlots:
    """Counts uploads in progress, in all and per key, so idle or slow clients cannot pin unbounded folders.

    Used from the event loop only (no lock needed).
    """

    def __init__(self, total: int, per_key: int):
        self.total, self.per_key = total, per_key
        self.active: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, owner: str) -> Iterator[None]:
        if sum(self.active.values()) >= self.total:
            raise TooManyUploadsError(f"{self.total} uploads are being received; try again shortly")
        if self.active.get(owner, 0) >= self.per_key:
            raise TooManyUploadsError(f"this key (or address) already has {self.per_key} uploads in progress")
        self.active[owner] = self.active.get(owner, 0) + 1
        try:
            yield
        finally:
            self.active[owner] -= 1
            if not self.active[owner]:
                del self.active[owner]


def upload_key(request: Request, owner: str) -> str:
    """Whose uploads count together against ``max_concurrent_uploads_per_key``: an API key's, or without keys
    a client address's (behind a reverse proxy that is the proxy's: give clients keys there)."""
    return owner or f"address {request.client.host if request.client else 'unknown'}"


def private_file(path: Path, mode: str = "wb"):
    """Open ``path`` for writing, created readable by this user only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def new_job_id() -> str:
    """An unguessable id (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def redact(text: str, folder: Path) -> str:
    """``text`` without ``folder``'s path (error messages go to clients; they never see server paths)."""
    upload = str(JobFolder(folder).input)
    return text.replace(upload, "the upload").replace(f"{folder}{os.sep}", "").replace(str(folder), "the job folder")


class JobFiles(JobFolder):
    """One job's folder (its paths: ``worker.folders.JobFolder``), read and written by the gateway: its
    ``job.json`` and its upload mark."""

    def __init__(self, data_dir: Path, job_id: str):
        if not JOB_ID.match(job_id):
            raise KeyError(job_id)
        super().__init__(jobs_dir(data_dir) / job_id)
        self.id = job_id
        self.known: dict | None = None  # job.json as ``JobMetas`` read it for this request

    def create(self, meta: dict) -> None:
        """The job's folder (0700, as is ``jobs/``), its ``job.json`` and the upload mark that says
        which gateway process is receiving it (until ``uploaded``)."""
        self.dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        with private_file(self.uploading, "w") as sink:
            sink.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
        self.write_meta({**meta, "id": self.id, "created_at": time.time()})

    def uploaded(self) -> None:
        """The upload is in and its job queued: the folder is a job's from now on."""
        self.uploading.unlink(missing_ok=True)

    def write_meta(self, meta: dict) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        with private_file(tmp, "w") as sink:
            sink.write(json.dumps(meta))
        tmp.replace(self.meta_path)

    def redact(self, text: str) -> str:
        """``text`` without this server's paths (error messages go to clients)."""
        return redact(text, self.dir)

    def meta(self) -> dict | None:
        if self.known is not None:
            return self.known
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def delete(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def drop_data(self) -> None:
        """Delete the upload, the result and any segments, keeping ``job.json`` and the run log (a canceled
        job that stays listed)."""
        for path in (self.input, self.result):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.segments, ignore_errors=True)


class JobMetas:
    """``job.json`` of recent jobs, kept ``ttl`` seconds, so a status read opens no file (it changes once after
    the upload is in at most: ``POST /jobs/ID/cancel`` rewrites it and forgets the entry). Used from the event
    loop only; the files are read in a thread."""

    def __init__(self, size: int = 4096, ttl: float = 10.0):
        self.size, self.ttl = size, ttl
        self.entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()

    async def get(self, files: JobFiles) -> dict | None:
        """The job's ``job.json``; None for no such job, or one whose upload is still being received."""
        hit = self.entries.get(files.id)
        if hit is not None and hit[0] > time.monotonic():
            self.entries.move_to_end(files.id)
            return hit[1]
        meta = await run_in_threadpool(lambda: None if files.uploading.exists() else files.meta())
        if meta is None:
            self.entries.pop(files.id, None)
            return None
        self.entries[files.id] = (time.monotonic() + self.ttl, meta)
        self.entries.move_to_end(files.id)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return meta

    def forget(self, job_id: str) -> None:
        self.entries.pop(job_id, None)


async def body_chunks(request: Request, idle_timeout: float, min_rate: float = 0.0) -> AsyncIterator[bytes]:
    """The request body as it arrives; UploadStalledError when nothing comes for ``idle_timeout`` seconds,
    or when past the first ``idle_timeout`` seconds it has averaged under ``min_rate`` bytes a second (a
    client trickling a byte now and then would otherwise hold its upload slot for as long as it likes)."""
    stream = request.stream()
    started, received = time.monotonic(), 0
    while True:
        try:
            chunk = await asyncio.wait_for(anext(stream), idle_timeout)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadStalledError(f"nothing received for {idle_timeout:g} s") from None
        received += len(chunk)
        elapsed = time.monotonic() - started
        if min_rate > 0 and elapsed > idle_timeout and received < min_rate * elapsed:
            raise UploadStalledError(f"{received / elapsed:.0f} bytes/s is under the minimum of {min_rate:g}")
        yield chunk


@dataclass(frozen=True)
class Upload:
    """What an upload brought: its size, and the file name its multipart part or X-Filename header gave."""

    size: int
    name: str


async def receive_upload(
    request: Request, path: Path, limit: int, idle_timeout: float = 30.0, min_rate: float = 0.0
) -> Upload:
    """Stream the request's video (multipart field ``file`` or the raw body) to ``path``.

    Nothing is held whole in memory or spooled elsewhere; past ``limit`` bytes it stops with
    UploadTooLargeError, after ``idle_timeout`` seconds without data with UploadStalledError, and on a
    broken multipart body with UploadMalformedError, removing what it wrote.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise UploadTooLargeError(f"the upload is {int(declared)} bytes; the limit is {limit}")
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    written, name = 0, ""
    with private_file(path) as sink:

        def write(data: bytes) -> None:
            nonlocal written
            written += len(data)
            if written > limit:
                raise UploadTooLargeError(f"the upload passed the limit of {limit} bytes")
            sink.write(data)

        try:
            chunks = body_chunks(request, idle_timeout, min_rate)
            if content_type == b"multipart/form-data":
                found = await receive_multipart(chunks, params.get(b"boundary", b""), write)
                if found is None:
                    raise UploadMissingError("no multipart field named 'file'")
                name = found
            else:  # a raw body may name its file in X-Filename (percent-encoded, as the page sends it)
                name = unquote(request.headers.get("x-filename", ""))
                async for chunk in chunks:
                    write(chunk)
        except BaseException:
            sink.close()
            path.unlink(missing_ok=True)
            raise
    if written == 0:
        path.unlink(missing_ok=True)
        raise UploadMissingError("the request has no video: send it as the body or as the multipart field 'file'")
    return Upload(written, name)


@dataclass
class PartState:
    """Where python-multipart's callbacks are in a body: the part's header name so far, its headers, whether
    it is the ``file`` part; whether a ``file`` part was found and the closing boundary reached."""

    header: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    is_file: bool = False
    found: bool = False
    filename: str = ""
    ended: bool = False


async def receive_multipart(
    chunks: AsyncIterator[bytes], boundary: bytes, write: Callable[[bytes], None]
) -> str | None:
    """Feed a multipart body to python-multipart, writing the ``file`` part's bytes; the part's file name
    ("" when it gives none), or None when there is no ``file`` part."""
    if not boundary:
        raise UploadMalformedError("a multipart/form-data body needs a boundary in its Content-Type")
    state = PartState()

    def on_part_begin() -> None:
        state.header, state.headers, state.is_file = b"", {}, False

    def on_header_begin() -> None:
        state.header = b""

    def on_header_field(data: bytes, start: int, end: int) -> None:  # a name split across reads comes in two calls
        state.header += data[start:end].lower()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state.headers[state.header] = state.headers.get(state.header, b"") + data[start:end]

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state.headers.get(b"content-disposition", b""))
        state.is_file = disposition.get(b"name") == b"file"
        if state.is_file and not state.found:
            state.filename = disposition.get(b"filename", b"").decode("utf-8", "replace")
        state.found = state.found or state.is_file

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state.is_file:
            write(data[start:end])

    def on_end() -> None:
        state.ended = True

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin,
        "on_header_begin": on_header_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise UploadMalformedError(f"malformed multipart body: {exc}") from exc
    if not state.ended:
        raise UploadMalformedError("malformed multipart body: it ends before its closing boundary")
    return state.filename if state.found else None


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


def job_folders(data_dir: Path) -> Iterator[tuple[JobFiles, dict | None]]:
    """Every job folder under ``data_dir`` with its ``job.json`` (None while unreadable), uploads still
    being received left out."""
    for files in all_folders(data_dir):
        if not files.uploading.exists():
            yield files, files.meta()


def all_folders(data_dir: Path) -> Iterator[JobFiles]:
    jobs = jobs_dir(data_dir)
    if not jobs.is_dir():
        return
    for folder in jobs.iterdir():
        if JOB_ID.match(folder.name):
            yield JobFiles(data_dir, folder.name)


def remove_dead_uploads(data_dir: Path, idle_timeout: float, starting: bool = False) -> list[str]:
    """Delete the folders of uploads whose gateway is gone; returns their ids.

    An upload is dead when nothing was written to it for ``idle_timeout`` + 60 s (a live one would have
    been dropped by then), or, for a gateway ``starting`` on the host that received it, when the process
    that received it is no longer running or had this process's pid (a container's gateway is always pid
    1). Uploads of other live gateways sharing the volume are left alone.
    """
    removed = []
    for files in all_folders(data_dir):
        try:
            mark = json.loads(files.uploading.read_text())
            newest = max(p.stat().st_mtime for p in (files.dir, files.uploading, files.input) if p.exists())
        except (OSError, ValueError):
            continue  # no mark (a job's folder), or one being written or removed right now
        ours = mark.get("host") == socket.gethostname()
        gone = starting and ours and (mark.get("pid") == os.getpid() or not process_alive(mark.get("pid")))
        if gone or time.time() - newest > idle_timeout + 60:
            files.delete()
            removed.append(files.id)
    return removed


def process_alive(pid) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def expired_jobs(data_dir: Path, ttl: float) -> list[str]:
    """Ids of job folders created more than ``ttl`` seconds ago (by job.json, else the folder's time)."""
    cutoff = time.time() - ttl
    expired = []
    for files, meta in job_folders(data_dir):
        try:
            created = meta.get("created_at", 0) if meta is not None else files.dir.stat().st_mtime
        except OSError:
            continue
        if created < cutoff:
            expired.append(files.id)
    return expired


def owned_jobs(data_dir: Path, owner: str) -> list[JobFiles]:
    """The job folders of one caller (``owner`` as ``get_owner`` gives it), newest first."""
    mine = [
        (meta.get("created_at", 0.0), files)
        for files, meta in job_folders(data_dir)
        if meta and meta.get("owner", "") == owner
    ]
    return [files for _, files in sorted(mine, key=lambda item: (-item[0], item[1].id))]
