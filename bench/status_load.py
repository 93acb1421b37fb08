"""Load on job status reads: one ``vinr serve`` process over RQ, on this machine (not a test).

Starts a Redis of its own (Debian's ``redis-server``, on a free port), one gateway process (``vinr serve``)
and one ``vinr worker``, then measures:

1. ``GET /jobs/ID`` of a finished job as fast as ``wrk`` (Debian's) can ask, with 10 and 200
   connections: requests per second and latency;
2. 200 clients each reading a job's status once a second while 50 event streams (``/jobs/ID/events``)
   are open and a job runs on the worker: the latency of those reads (p50, p99, max).

``python -m bench.status_load [--seconds 15]``. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "bikes.mp4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"status_load: timed out after {timeout:.0f} s")


def submit(client: httpx.Client, params: dict) -> str:
    with SAMPLE.open("rb") as handle:
        response = client.post("/upsample", params=params, files={"file": ("bikes.mp4", handle)})
    response.raise_for_status()
    return response.json()["id"]


def run_wrk(url: str, connections: int, seconds: int) -> tuple[float, str, str]:
    """Requests per second, median and 99th-percentile latency of ``wrk`` against ``url``."""
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url], capture_output=True, text=True
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", done.stdout, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", done.stdout, re.M).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if errors:
        now = httpx.get(url, timeout=30)
        raise SystemExit(f"status_load: wrk saw {errors.group(1)} error responses; now {now.status_code}: {now.text}")
    return rate, p50, p99


async def polling_load(port: int, job_id: str, clients: int, streams: int, seconds: float) -> list[float]:
    """Latencies (s) of ``clients`` status readers, one read a second each on a keep-alive connection of its
    own, beside ``streams`` event streams. The client speaks HTTP/1.1 on raw streams: an HTTP library's own
    work on this shared 2-core machine would show up in the latencies it measures."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    request = f"GET /jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    async def read_response(reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        await reader.readexactly(length)
        return head

    async def stream() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        while time.monotonic() < stop and await reader.read(65536):
            pass
        writer.close()

    async def poller(offset: float) -> None:
        await asyncio.sleep(offset)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < stop:
            began = time.monotonic()
            writer.write(request)
            head = await read_response(reader)
            latencies.append(time.monotonic() - began)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"status_load: {head.decode(errors='replace')}")
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
        writer.close()

    tasks = [asyncio.create_task(stream()) for _ in range(streams)]
    await asyncio.gather(*(poller(i / clients) for i in range(clients)))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="length of each measurement")
    args = parser.parse_args(argv)
    if not shutil.which("wrk") or not shutil.which("redis-server"):
        raise SystemExit("status_load: needs wrk and redis-server (apt-get install wrk redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="vinr-load-"))
    redis_port, port = free_port(), free_port()
    env = {
        **os.environ,
        "VINR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "VINR_DATA_DIR": str(folder / "data"),
        "VINR_SEGMENT_SECONDS": "0",
    }
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
        )
    ]
    try:
        time.sleep(0.5)
        log = (folder / "serve.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "service.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=60)
        wait_until(lambda: client.get("/readyz").status_code == 200)
        done = submit(client, {"scale": 2, "time_factor": 2})
        wait_until(lambda: client.get(f"/jobs/{done}").json()["state"] == "finished", 300)
        print(f"machine: {os.cpu_count()} cores; one gateway process, one worker, Redis {redis_port}")
        print()
        print("| load | requests/s | p50 | p99 |")
        print("|---|---|---|---|")
        for connections in (10, 200):
            rate, p50, p99 = run_wrk(f"{base}/jobs/{done}", connections, args.seconds)
            print(f"| wrk, GET /jobs/ID of a finished job, {connections} connections | {rate:.0f} | {p50} | {p99} |")
        running = submit(client, {"scale": 4, "time_factor": 4})
        wait_until(lambda: client.get(f"/jobs/{running}").json()["state"] == "started", 120)
        latencies = asyncio.run(polling_load(port, running, 200, 50, args.seconds))
        state = client.get(f"/jobs/{running}").json()["state"]
        cuts = statistics.quantiles(latencies, n=100)
        print(
            f"| 200 clients reading a running job's status once a second, 50 event streams open ({state} at the end)"
            f" | {len(latencies) / args.seconds:.0f} | {cuts[49] * 1000:.1f}ms | {cuts[98] * 1000:.1f}ms"
            f" (max {max(latencies) * 1000:.1f}ms) |"
        )
    finally:
        for proc in reversed(procs):
            proc.kill()  # the worker's warm shutdown would wait for its job
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
