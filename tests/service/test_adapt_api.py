"""``adapt=SECONDS`` through the service: real Redis, real ``vinr worker`` processes, real HTTP. A job's
adaptation runs once, its weights stay in its own folder, its segments and previews render with them, and
the budget holds at the gateway and at the worker."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from tests.media import texture_frames, video_frames, write_clip
from tests.service.conftest import REDIS_URL, attempts, finished, post_video, wait_for

GATE_DIR = Path(__file__).with_name("gate")
PARAMS = {"scale": 2, "time_factor": 2, "model": "tiny", "crf": 0}


def always_adapting(worker, count: int = 1, **env):
    """Workers whose guard keeps any adapted weights (``VINR_TEST_ADAPT_ALWAYS``, tests/service/gate), so the
    test follows adapted weights through a job whatever seconds of training on a test clip gain."""
    pythonpath = os.pathsep.join(filter(None, [str(GATE_DIR), os.environ.get("PYTHONPATH")]))
    for _ in range(count):
        worker(env={"PYTHONPATH": pythonpath, "VINR_TEST_ADAPT_ALWAYS": "1", **env})


def folder_of(tmp_path, job_id: str) -> Path:
    return tmp_path / "data" / "jobs" / job_id


def result(client, job_id, path: Path, headers=None) -> np.ndarray:
    response = client.get(f"/jobs/{job_id}/result", headers=headers)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return video_frames(path)[1]


def test_segmented_job_adapts_once_and_every_segment_renders_with_it(serve, worker, long_clip, tmp_path):
    always_adapting(worker, 2)
    client = serve(redis_url=REDIS_URL, segment_seconds=1)
    job_id = post_video(client, long_clip, {**PARAMS, "adapt": 2}).json()["id"]
    seen: list[dict] = []
    body = wait_for(lambda: seen.append(client.get(f"/jobs/{job_id}").json()) or finished(client, job_id), timeout=240)
    assert body["state"] == "finished", body
    assert any(b["progress"].get("stage") == "adapting" for b in seen if b["state"] == "started"), seen[:5]
    summary = body["progress"]["adapt"]
    assert summary["used"] and summary["steps"] > 0 and summary["seconds"] <= 4, summary
    assert "gain_db" in summary and summary["scale"] == 2 and summary["gap"] == 2

    runs = attempts(tmp_path, job_id)
    adapting = [r for r in runs if r.get("segment") == "adapt"]
    assert [r["event"] for r in adapting] == ["start", "end"], runs  # one adaptation for the whole job
    segment_starts = [r["time"] for r in runs if isinstance(r.get("segment"), int) and r["event"] == "start"]
    plan = json.loads((folder_of(tmp_path, job_id) / "segments.json").read_text())
    assert len(segment_starts) == len(plan["segments"]) >= 4
    assert min(segment_starts) >= adapting[-1]["time"]  # every segment waited for it
    weights = folder_of(tmp_path, job_id) / "adapted.safetensors"
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["adapt"]["used"] and card["adapted_from"] == "tiny"

    plain = serve(segment_seconds=0)  # the same job with the served weights, embedded
    plain_id = post_video(plain, long_clip, PARAMS).json()["id"]
    assert wait_for(lambda: finished(plain, plain_id), timeout=180)["state"] == "finished"
    adapted = result(client, job_id, tmp_path / "adapted.mp4")
    served = result(plain, plain_id, tmp_path / "served.mp4")
    assert adapted.shape == served.shape == (240, 96, 128, 3)
    for segment in plan["segments"]:  # each segment's frames differ from the served model's
        first = segment["first"]
        span = slice(first, first + 20)
        assert np.abs(adapted[span].astype(int) - served[span].astype(int)).mean() > 0.05, segment

    upload = {"file": ("in.mp4", long_clip.read_bytes(), "video/mp4")}  # a preview can ask for the job's weights
    shots = [
        client.post("/preview", params={**query, "scale": 2, "model": "tiny", "at": 1.0}, files=upload).content
        for query in ({}, {"job": job_id})
    ]
    assert shots[0][:8] == shots[1][:8] == b"\x89PNG\r\n\x1a\n" and shots[0] != shots[1]


def test_adaptations_are_kept_apart_between_jobs_and_keys(serve, worker, long_clip, tmp_path):
    always_adapting(worker)
    client = serve(redis_url=REDIS_URL, api_keys=["key-one", "key-two"])
    one, two = {"Authorization": "Bearer key-one"}, {"Authorization": "Bearer key-two"}
    other = write_clip(tmp_path / "other.mp4", texture_frames(60, 48, 64, seed=9, velocity=(-1.0, 1.5)))
    first = post_video(client, long_clip, {**PARAMS, "adapt": 1}, headers=one).json()["id"]
    second = post_video(client, other, {**PARAMS, "adapt": 1}, headers=two).json()["id"]
    for job_id, headers in ((first, one), (second, two)):

        def ended(job_id=job_id, headers=headers):
            body = client.get(f"/jobs/{job_id}", headers=headers).json()
            return body if body["state"] in ("finished", "failed") else None

        body = wait_for(ended, timeout=180)
        assert body["state"] == "finished" and body["progress"]["adapt"]["used"], body
    paths = [folder_of(tmp_path, j) / "adapted.safetensors" for j in (first, second)]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 2  # each job learned its own video, in its own folder
    weights = [load_file(str(p)) for p in paths]
    assert any(not np.array_equal(weights[0][k].numpy(), weights[1][k].numpy()) for k in weights[0])
    files = {"file": ("in.mp4", long_clip.read_bytes(), "video/mp4")}
    query = {"scale": 2, "model": "tiny", "at": 0.5}
    assert client.post("/preview", params={**query, "job": first}, files=files, headers=two).status_code == 404
    assert client.post("/preview", params={**query, "job": first}, files=files, headers=one).status_code == 200


def test_the_budget_is_capped_by_the_gateway_and_by_the_worker(serve, worker, long_clip, tmp_path):
    refused = serve(max_adapt_seconds=5)
    response = post_video(refused, long_clip, {**PARAMS, "adapt": 30})
    assert response.status_code == 422 and response.json()["field"] == "adapt", response.text
    assert "adapt must be at most 5" in response.json()["detail"]
    off = serve(max_adapt_seconds=0)
    assert post_video(off, long_clip, {**PARAMS, "adapt": 1}).status_code == 422

    always_adapting(worker, VINR_MAX_ADAPT_SECONDS="1")  # a worker never spends more than its own cap
    client = serve(redis_url=REDIS_URL, max_adapt_seconds=60)
    job_id = post_video(client, long_clip, {**PARAMS, "adapt": 60}).json()["id"]
    body = wait_for(lambda: finished(client, job_id), timeout=180)
    assert body["state"] == "finished", body
    assert 0 < body["progress"]["adapt"]["seconds"] <= 2.5, body["progress"]


def test_a_video_too_small_to_learn_from_renders_with_the_served_weights(serve, tmp_path):
    client = serve()
    small = write_clip(tmp_path / "small.mp4", texture_frames(30, 24, 32))  # 24 px: a 2x task needs 32
    job_id = post_video(client, small, {**PARAMS, "adapt": 5}).json()["id"]
    body = wait_for(lambda: finished(client, job_id), timeout=120)
    assert body["state"] == "finished", body
    summary = body["progress"]["adapt"]
    assert not summary["used"] and "too small to learn a 2x upsample" in summary["refused"], summary
    assert not (folder_of(tmp_path, job_id) / "adapted.safetensors").exists()
