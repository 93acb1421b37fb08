"""The self-hosted stack as a user runs it: ``docker compose up`` of the project's own files (CPU flavour).

Brings an engine up with ``../shared/tools/container-engine up`` (a real Docker engine on this machine),
builds the image with the project's Dockerfile, starts the CPU stack and waits for ``/readyz``. Then:

1. upsamples the bundled sample (``POST /upsample``) and decodes a bitstream (``POST /decode``);
2. kills the worker (SIGKILL) in the middle of a longer job and starts it again: the job is requeued;
3. stops the worker, queues a job, restarts Redis (its append-only file keeps the queue) and starts
   the worker again;
4. checks that every job finished exactly once (one finished run in its ``attempts.jsonl``) with the
   expected size, frame count and audio, that ``docker compose down`` takes seconds, then brings the
   engine down.

``python .ci/compose_smoke.py`` from the repository root (root, as ``container-engine`` needs). Where no
engine can be started it says so and exits 1 in CI (``CI=true``), 0 elsewhere. Not a pytest test: it
takes minutes and needs root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx

ROOT = Path(__file__).resolve().parents[1]
ENGINE = Path(os.environ.get("CONTAINER_ENGINE", ROOT.parent / "shared" / "tools" / "container-engine"))
API = "http://127.0.0.1:8000"
DOWN_SECONDS = 15
"""Longest ``docker compose down`` of the stack accepted (an idle worker's SIGTERM is a warm shutdown)."""


def say(text: str) -> None:
    print(f"compose-smoke: {text}", flush=True)


def run(*command: str, timeout: float = 900, check: bool = True) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise SystemExit(f"compose-smoke: {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


class Stack:
    """``docker compose`` with the CPU override and the engine's machine-specific override."""

    def __init__(self, override: str):
        self.files = ["-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml", "-f", override]

    def compose(self, *args: str, timeout: float = 900, check: bool = True) -> str:
        return run("docker", "compose", *self.files, *args, timeout=timeout, check=check)

    def attempts(self, job_id: str) -> list[dict]:
        text = self.compose("exec", "-T", "api", "cat", f"/data/jobs/{job_id}/attempts.jsonl")
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait(check, what: str, timeout: float = 300, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"compose-smoke: timed out after {timeout:.0f} s waiting for {what}")


def submit(client: httpx.Client, route: str, path: Path, params: dict) -> str:
    with path.open("rb") as handle:
        response = client.post(route, params=params, files={"file": (path.name, handle)})
    if response.status_code != 202:
        raise SystemExit(f"compose-smoke: {route} answered {response.status_code}: {response.text}")
    return response.json()["id"]


def state(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/jobs/{job_id}").json()


def check_result(
    client: httpx.Client, stack: Stack, job_id: str, size: tuple[int, int], frames: int, audio: bool, runs: int = 1
):
    """The job finished once after ``runs`` starts, and its result has this size, frame count and (no) audio."""
    body = wait(lambda: (b := state(client, job_id))["state"] in ("finished", "failed") and b, f"job {job_id}", 600)
    if body["state"] != "finished":
        raise SystemExit(f"compose-smoke: job {job_id} failed: {body['error']}")
    attempts = stack.attempts(job_id)
    ends = [a.get("outcome") for a in attempts if a["event"] == "end"]
    starts = sum(a["event"] == "start" for a in attempts)
    if ends != ["finished"] or starts != runs:
        raise SystemExit(
            f"compose-smoke: job {job_id} should have started {runs} time(s) and finished once: {attempts}"
        )
    result = ROOT / f".compose-smoke-{job_id}.mp4"
    result.write_bytes(client.get(f"/jobs/{job_id}/result").content)
    try:
        with av.open(str(result)) as container:
            video = container.streams.video[0]
            got = ((video.codec_context.width, video.codec_context.height), sum(1 for _ in container.decode(video)))
            has_audio = bool(container.streams.audio)
    finally:
        result.unlink()
    if got != (size, frames) or has_audio != audio:
        raise SystemExit(f"compose-smoke: job {job_id} made {got}, audio {has_audio}; expected {size, frames}, {audio}")
    say(f"job {job_id}: finished once, {size[0]}x{size[1]}, {frames} frames, audio {audio}")


def main() -> int:
    if not ENGINE.is_file():
        return no_engine(f"{ENGINE} is missing")
    started = time.monotonic()
    up = subprocess.run([str(ENGINE), "up"], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    if up.returncode:
        return no_engine(up.stderr.strip().splitlines()[-1] if up.stderr.strip() else f"exit {up.returncode}")
    stack = Stack(run(str(ENGINE), "override").strip())
    try:
        smoke(stack)
    finally:
        stack.compose("down", "--volumes", "--timeout", "30", check=False)
        run(str(ENGINE), "down", check=False)
    say(f"passed in {time.monotonic() - started:.0f} s")
    return 0


def no_engine(why: str) -> int:
    say(f"no container engine could be started here: {why}")
    return 1 if os.environ.get("CI") == "true" else 0


def smoke(stack: Stack) -> None:
    built = time.monotonic()
    stack.compose("build", timeout=1500)
    say(f"image built in {time.monotonic() - built:.0f} s")
    stack.compose("down", "--volumes", "--timeout", "30", check=False)  # nothing left of an earlier run
    stack.compose("up", "-d")
    client = httpx.Client(base_url=API, timeout=60)
    wait(lambda: client.get("/readyz").status_code == 200, "/readyz", 300)
    say("stack ready")
    sample = ROOT / "samples" / "bikes.mp4"

    plain = submit(client, "/upsample", sample, {"scale": 2, "time_factor": 2})
    decoded = submit(client, "/decode", ROOT / "tests" / "golden" / "v3.nrff", {})
    check_result(client, stack, plain, (400, 168), 100, True)
    check_result(client, stack, decoded, (48, 32), 8, False)

    long = submit(client, "/upsample", sample, {"scale": 3, "time_factor": 4})
    wait(lambda: (state(client, long)["progress"]["frames_done"] or 0) > 0, "the long job to start", 300, 0.5)
    stack.compose("kill", "-s", "SIGKILL", "worker-cpu")
    say("worker killed mid-job")
    stack.compose("start", "worker-cpu")
    check_result(client, stack, long, (600, 252), 200, True, runs=2)

    stack.compose("stop", "worker-cpu")
    queued = submit(client, "/upsample", sample, {"scale": 1.5, "time_factor": 2})
    stack.compose("restart", "redis")
    say("Redis restarted with a job queued")
    stack.compose("start", "worker-cpu")
    check_result(client, stack, queued, (300, 126), 100, True)

    began = time.monotonic()
    stack.compose("down", "--volumes", timeout=120)
    took = time.monotonic() - began
    if took > DOWN_SECONDS:
        raise SystemExit(f"compose-smoke: docker compose down took {took:.1f} s (at most {DOWN_SECONDS})")
    say(f"docker compose down took {took:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
