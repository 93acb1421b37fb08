"""Benchmark one segmented job on 1 worker, then on 2 workers, in one run (not a test).

A real ``vinr serve`` gateway and real ``vinr worker`` processes on a Redis database of the bench's own
(flushed before each run), each worker with one torch thread (``OMP_NUM_THREADS=1``), so two workers
use the two cores of this machine. The job is cut into segments by ``VINR_SEGMENT_SECONDS``; the time
is from the upload to the job's end (the workers are up and have loaded their model before).

``python -m bench.segments --input bigbuckbunny:320x180:96 --segment-seconds 0.48 --scale 2 --time-factor 2``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from redis import Redis

from bench.upsample import make_input
from tests.processes import poll

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(check, timeout: float, what: str):
    """``check()``'s first truthy value (HTTP errors count as not yet); SystemExit naming ``what`` after
    ``timeout`` seconds."""
    try:
        return poll(check, timeout, 0.5, (httpx.HTTPError,))
    except TimeoutError:
        raise SystemExit(f"bench: not {what} within {timeout:g} s") from None


def run(workers: int, args, folder: Path) -> dict:
    """One segmented job on ``workers`` worker processes; its wall time and shape."""
    Redis.from_url(args.redis).flushdb()
    env = {
        **os.environ,
        "VINR_REDIS_URL": args.redis,
        "VINR_DATA_DIR": str(folder / f"data-{workers}"),
        "VINR_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
        "VINR_SEGMENT_SECONDS": str(args.segment_seconds),
        "VINR_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    port = free_port()
    logs = [
        (folder / f"{name}-{workers}.log").open("wb") for name in ["serve", *[f"worker{i}" for i in range(workers)]]
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
    ]
    procs += [
        subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        for log in logs[1:]
    ]
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        wait(
            lambda: client.get("/readyz").json()["detail"].startswith(f"{workers} worker"),
            120,
            f"{workers} workers ready",
        )
        params = {"scale": args.scale, "time_factor": args.time_factor, "model": args.model}
        started = time.perf_counter()
        with open(args.source, "rb") as handle:
            job = client.post("/upsample", params=params, files={"file": ("in.mp4", handle, "video/mp4")}).json()
        body = wait(
            lambda: (b := client.get(f"/jobs/{job['id']}").json())["state"] in ("finished", "failed", "canceled") and b,
            3600,
            "the job ended",
        )
        seconds = time.perf_counter() - started
        if body["state"] != "finished":
            raise SystemExit(f"bench: the job {body['state']}: {body['error']}")
        plan = folder / f"data-{workers}" / "jobs" / job["id"] / "segments.json"
        segments = len(json.loads(plan.read_text())["segments"])
        return {
            "workers": workers,
            "seconds": seconds,
            "segments": segments,
            "frames": body["progress"]["frames_total"],
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--input", default=str(ROOT / "samples" / "bikes.mp4"), help="a video, or bigbuckbunny:WxH:FRAMES (eval extra)"
    )
    parser.add_argument("--segment-seconds", type=float, default=0.25)
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--time-factor", type=float, default=2.0)
    parser.add_argument("--model", default="videoinr-s")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="a database the bench may flush")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; 1 torch thread per worker")
    print(f"input: {args.input}, scale {args.scale:g}, time factor {args.time_factor:g}, model {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        args.source = make_input(args.input, Path(tmp)) if args.input.startswith("bigbuckbunny:") else args.input
        rows = [run(n, args, Path(tmp)) for n in args.workers]
    base = rows[0]["seconds"]
    print(f"{'workers':>7} {'segments':>8} {'frames':>6} {'seconds':>8} {'speed-up':>8}")
    for row in rows:
        speedup = base / row["seconds"]
        print(f"{row['workers']:>7} {row['segments']:>8} {row['frames']:>6} {row['seconds']:>8.1f} {speedup:>7.2f}x")


if __name__ == "__main__":
    main()
