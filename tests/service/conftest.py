"""A real gateway (uvicorn on a free port), real Redis and real ``vinr worker`` processes.

Redis: ``VINR_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``); the tests flush only that
database. Point it elsewhere to run them against another Redis.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from redis import Redis

from service.main import create_app
from service.settings import Settings
from tests.media import texture_frames, write_clip
from tests.processes import poll
from worker.folders import JobFolder

REDIS_URL = os.environ.get("VINR_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_db() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:  # a clear reason instead of a wall of connection errors
        pytest.fail(f"no Redis at {REDIS_URL} (set VINR_TEST_REDIS_URL): {exc}")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, tiny_model_path) -> Path:
    folder = tmp_path_factory.mktemp("served")
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), folder / f"tiny{suffix}")
    return folder


@pytest.fixture
def queue_name() -> str:
    """A queue of this test's own, so no worker takes another test's jobs."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def serve(tmp_path, models_dir, queue_name) -> Iterator[Callable[..., httpx.Client]]:
    """Start gateways with given settings; each answers real HTTP on its own port."""
    servers = []

    def start(**overrides) -> httpx.Client:
        overrides.setdefault("queue", queue_name)
        settings = Settings(data_dir=tmp_path / "data", models_dir=models_dir, device="cpu", **overrides)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def worker(tmp_path, models_dir, redis_db, queue_name) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start ``vinr worker`` processes on the test Redis; they are killed at the end."""
    procs = []

    def start(heartbeat_ttl: int = 20, redis_url: str = REDIS_URL, env: dict | None = None) -> subprocess.Popen:
        """A worker process; ``env`` adds to (or overrides) the variables set here."""
        environment = {
            **os.environ,
            "VINR_REDIS_URL": redis_url,
            "VINR_DATA_DIR": str(tmp_path / "data"),
            "VINR_MODELS_DIR": str(models_dir),
            "VINR_DEVICE": "cpu",
            "VINR_HEARTBEAT_TTL": str(heartbeat_ttl),
            "VINR_QUEUE": queue_name,
            **(env or {}),
        }
        log = (tmp_path / f"worker-{len(procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"],
            env=environment,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


class OwnRedis:
    """A redis-server of one test's own, with an append-only file (as docker-compose.yml runs it)."""

    def __init__(self, folder: Path, appendonly: bool = True):
        self.exe = shutil.which("redis-server")
        self.folder, self.appendonly, self.port = folder, appendonly, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=20, interval=0.1)

    def answers(self) -> bool:
        try:
            return bool(Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except Exception:
            return False

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: Redis writes its append-only file and exits)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[Callable[..., OwnRedis]]:
    """Start Redis servers of this test's own (skipped where redis-server is not installed)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    servers = []

    def start(appendonly: bool = True) -> OwnRedis:
        folder = tmp_path / f"redis-{len(servers)}"
        folder.mkdir()
        server = OwnRedis(folder, appendonly)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def wait_for(check: Callable[[], object], timeout: float = 60, interval: float = 0.2):
    """Poll ``check`` until it returns something truthy (AssertionError after ``timeout`` seconds)."""
    try:
        return poll(check, timeout, interval)
    except TimeoutError as exc:
        raise AssertionError(f"timed out: {exc}") from None


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory):
    """4 s at 30 fps, 64x48: long enough to be caught while running."""
    return write_clip(tmp_path_factory.mktemp("long") / "long.mp4", texture_frames(120, 48, 64), audio=True)


def attempts(tmp_path, job_id: str) -> list[dict]:
    """The job folder's run log (``worker.folders.ATTEMPTS``), as the data folder of ``serve`` holds it."""
    path = JobFolder(tmp_path / "data" / "jobs" / job_id).attempts
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def post_video(client, path, params, **kwargs):
    """POST /upsample with ``path`` as the multipart field ``file``."""
    with open(path, "rb") as handle:
        return client.post("/upsample", params=params, files={"file": ("in.mp4", handle, "video/mp4")}, **kwargs)


def finished(client, job_id):
    """The job's JSON once it has ended, else None."""
    body = client.get(f"/jobs/{job_id}").json()
    return body if body["state"] in ("finished", "failed", "canceled") else None


def kill_worker_mid_job(serve, worker, clip, retries: int, heartbeat_ttl: int = 3):
    """Start a job on a worker, SIGKILL the worker once the job has started; (client, job id)."""
    first = worker(heartbeat_ttl=heartbeat_ttl)
    client = serve(redis_url=REDIS_URL, retries=retries, heartbeat_ttl=heartbeat_ttl)
    job_id = post_video(client, clip, {"scale": 2, "time_factor": 2, "model": "tiny"}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["state"] == "started")
    first.send_signal(signal.SIGKILL)
    first.wait()
    return client, job_id
