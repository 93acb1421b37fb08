"""Chaos: 20 concurrent jobs, good and bad, two workers, a worker SIGKILL and a Redis restart mid-way.

At the end every accepted job is finished or failed with a message, none ran twice (but the one
whose worker was killed, which runs once more), none is lost, nothing is left behind, and /readyz is
200 again within 30 s. Slow (about a minute): ``.ci/run`` runs it with ``-m slow -k chaos``.
"""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.media import texture_frames, write_clip
from tests.processes import open_files_under
from tests.service.conftest import finished, post_video, wait_for

TTL = 2
"""Heartbeat TTL of the chaos workers and gateway, seconds."""


def bad_requests(tmp_path, clip):
    """(label, function of a client) for requests the gateway must refuse with a 4xx."""
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 200)
    tiny = write_clip(tmp_path / "tiny.mp4", texture_frames(3, 2, 2))
    return [
        ("garbage", lambda c: post_video(c, garbage, {"model": "tiny"})),
        ("scale", lambda c: post_video(c, clip, {"scale": 30, "model": "tiny"})),
        ("fps", lambda c: post_video(c, clip, {"fps": "inf", "model": "tiny"})),
        ("av1-tiny", lambda c: post_video(c, tiny, {"codec": "av1", "fps": 1000, "model": "tiny"})),
        ("multipart", lambda c: c.post("/upsample", content=b"abc", headers={"Content-Type": "multipart/form-data"})),
        ("bitstream", lambda c: c.post("/decode", content=b"VINR" + bytes(60))),
    ]


def runs_of(folder) -> list[dict]:
    path = folder / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_chaos(serve, worker, own_redis, clip_with_audio, long_clip, tmp_path):
    redis = own_redis()
    workers = [worker(heartbeat_ttl=TTL, redis_url=redis.url) for _ in range(2)]
    client = serve(redis_url=redis.url, heartbeat_ttl=TTL, retries=1, max_concurrent_uploads_per_key=20)
    wait_for(lambda: client.get("/readyz").status_code == 200)

    good = [lambda c: post_video(c, long_clip, {"scale": 2, "time_factor": 2, "model": "tiny"})] * 4
    good += [lambda c: post_video(c, clip_with_audio, {"scale": 2, "time_factor": 2, "model": "tiny"})] * 10
    bad = bad_requests(tmp_path, clip_with_audio)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda send: send(client), good + [send for _, send in bad]))
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    assert len(accepted) == len(good), [a.text for a in answers if a.status_code != 202]
    assert all(400 <= a.status_code < 500 and a.json()["detail"] for a in refused), [a.text for a in refused]

    # a worker dies in the middle of a job; another takes its place
    wait_for(lambda: any(client.get(f"/jobs/{j}").json()["state"] == "started" for j in accepted))
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    workers.append(worker(heartbeat_ttl=TTL, redis_url=redis.url))
    # Redis restarts while jobs run (the compose file's setting: append-only file on)
    time.sleep(2)
    redis.stop()
    time.sleep(3)
    redis.start()

    bodies = [wait_for(lambda j=job_id: finished(client, j), timeout=300) for job_id in accepted]
    assert all(b["state"] == "finished" or (b["state"] == "failed" and b["error"]) for b in bodies), bodies
    assert [b["state"] for b in bodies].count("finished") >= len(accepted) - 1, bodies
    folders = {job_id: tmp_path / "data" / "jobs" / job_id for job_id in accepted}
    starts = {job_id: [r["event"] for r in runs_of(folder)].count("start") for job_id, folder in folders.items()}
    twice = [job_id for job_id, count in starts.items() if count > 1]
    assert all(count >= 1 for count in starts.values()), starts
    logs = "".join(log.read_text() for log in sorted(tmp_path.glob("worker-*.log")))
    detail = {j: runs_of(folders[j]) for j in twice}
    assert len(twice) <= 1 and all(starts[j] == 2 for j in twice), (detail, logs[-3000:])  # only the killed job
    ends = {job_id: [r["event"] for r in runs_of(folder)].count("end") for job_id, folder in folders.items()}
    assert set(ends.values()) == {1}, ends  # every job ran to its end exactly once (the killed run never ended)
    assert sorted(p.name for p in (tmp_path / "data" / "jobs").iterdir()) == sorted(accepted)  # refused: no folder
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)

    for job_id in accepted:
        assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert list((tmp_path / "data" / "jobs").iterdir()) == []
    assert open_files_under(tmp_path / "data") == []
    for proc in workers[1:]:
        assert proc.poll() is None, "a worker exited during the chaos"
        assert open_files_under(tmp_path / "data", proc.pid) == []
