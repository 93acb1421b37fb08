"""Heartbeats of ``vinr worker``: long jobs stay started and run once; dead workers' jobs are retried once.

Real Redis, real worker processes, ``VINR_HEARTBEAT_TTL=2`` (6 where two workers share the machine).
``.ci/run`` runs this file twice: with the rq that requirements.lock pins and with the lowest rq that
pyproject.toml allows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.service.conftest import REDIS_URL, attempts, finished, kill_worker_mid_job, post_video, wait_for

GATE_DIR = Path(__file__).with_name("gate")
"""A sitecustomize that makes a worker's jobs wait for a file the test creates."""

TTL = 2
"""Heartbeat TTL of these tests' workers and gateways, seconds."""
BUSY_TTL = 6
"""Heartbeat TTL where two workers share this 2-core machine: a CI run once stalled both for 3 s."""


def test_long_job_stays_started_and_runs_once(serve, worker, long_clip, tmp_path):
    gate = tmp_path / "gate"
    pythonpath = os.pathsep.join(filter(None, [str(GATE_DIR), os.environ.get("PYTHONPATH")]))
    worker(heartbeat_ttl=TTL, env={"PYTHONPATH": pythonpath, "VINR_TEST_GATE": str(gate)})
    client = serve(redis_url=REDIS_URL, heartbeat_ttl=TTL)
    job_id = post_video(client, long_clip, {"scale": 2, "time_factor": 2, "model": "tiny"}).json()["id"]
    seen, started_at = [], None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = client.get(f"/jobs/{job_id}").json()
        seen.append(body["state"])
        if body["state"] == "started" and started_at is None:
            started_at = time.monotonic()
        if started_at is not None and time.monotonic() - started_at > 3 * TTL:
            gate.touch()  # the job has run for more than three TTLs, held at its first progress report
        if body["state"] in ("finished", "failed", "canceled"):
            break
        time.sleep(0.2)
    assert started_at is not None and gate.exists(), seen
    assert seen[-1] == "finished", seen[-1]
    after_start = seen[seen.index("started") : -1]
    assert set(after_start) == {"started"}, f"the running job left 'started': {sorted(set(after_start))}"
    runs = attempts(tmp_path, job_id)
    assert [r["event"] for r in runs] == ["start", "end"] and runs[1]["outcome"] == "finished", runs


def test_killed_worker_job_is_retried_once_then_finishes(serve, worker, long_clip, tmp_path):
    client, job_id = kill_worker_mid_job(serve, worker, long_clip, retries=1, heartbeat_ttl=TTL)
    worker(heartbeat_ttl=TTL)
    body = wait_for(lambda: finished(client, job_id), timeout=120)
    runs = attempts(tmp_path, job_id)
    assert body["state"] == "finished", (body, runs)
    assert [r["event"] for r in runs] == ["start", "start", "end"], runs  # the killed run never ended
    assert runs[0]["pid"] != runs[1]["pid"] and runs[2]["outcome"] == "finished"


def worker_logs(tmp_path) -> str:
    """What the test's worker processes printed (their late-heartbeat warnings among it)."""
    logs = sorted(tmp_path.glob("worker-*.log"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


def test_two_workers_never_run_the_same_job(serve, worker, clip_with_audio, tmp_path):
    worker(heartbeat_ttl=BUSY_TTL)
    worker(heartbeat_ttl=BUSY_TTL)
    client = serve(redis_url=REDIS_URL, heartbeat_ttl=BUSY_TTL)
    ids = [
        post_video(client, clip_with_audio, {"scale": 3, "time_factor": 3, "model": "tiny"}).json()["id"]
        for _ in range(4)
    ]
    for job_id in ids:
        assert wait_for(lambda j=job_id: finished(client, j), timeout=120)["state"] == "finished"
    runs = {job_id: attempts(tmp_path, job_id) for job_id in ids}
    twice = {job_id: log for job_id, log in runs.items() if [r["event"] for r in log] != ["start", "end"]}
    assert not twice, f"{twice}\n{worker_logs(tmp_path)}"
    assert len({log[0]["pid"] for log in runs.values()}) == 2, "both workers should have taken jobs"
