"""Segmented jobs over RQ: real Redis, two or three ``vinr worker`` processes, real HTTP."""

from __future__ import annotations

import json
import signal
import time

import numpy as np

from tests.media import audio_span, video_frames
from tests.service.conftest import REDIS_URL, attempts, finished, post_video, wait_for

PARAMS = {"scale": 2, "time_factor": 2, "model": "tiny"}


def runs_by_segment(tmp_path, job_id: str) -> dict:
    """Each segment's (and the join's) run log events."""
    runs: dict = {}
    for run in attempts(tmp_path, job_id):
        runs.setdefault(run.get("segment"), []).append(run)
    return runs


def result_of(client, job_id, path):
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 200
    path.write_bytes(response.content)
    return video_frames(path)


def test_segmented_job_equals_one_run(serve, worker, long_clip, tmp_path):
    worker()
    worker()
    client = serve(redis_url=REDIS_URL, segment_seconds=0.5)
    job_id = post_video(client, long_clip, {**PARAMS, "crf": 0}).json()["id"]
    plan = json.loads((tmp_path / "data" / "jobs" / job_id / "segments.json").read_text())
    assert len(plan["segments"]) >= 4, plan
    seen = []
    body = wait_for(lambda: seen.append(client.get(f"/jobs/{job_id}").json()) or finished(client, job_id), timeout=180)
    assert body["state"] == "finished", body
    running = [b["progress"] for b in seen if b["state"] == "started"]
    assert running and all(p["frames_total"] == 240 for p in running), running[:3]
    assert body["progress"]["frames_done"] == body["progress"]["frames_total"] == 240

    whole = serve(segment_seconds=0)  # the same job unsegmented, embedded
    whole_id = post_video(whole, long_clip, {**PARAMS, "crf": 0}).json()["id"]
    assert wait_for(lambda: finished(whole, whole_id), timeout=180)["state"] == "finished"
    times, frames = result_of(client, job_id, tmp_path / "segmented.mp4")
    whole_times, whole_frames = result_of(whole, whole_id, tmp_path / "whole.mp4")
    assert frames.shape == whole_frames.shape == (240, 96, 128, 3)
    assert np.allclose(times, whole_times, atol=1e-6)
    assert audio_span(tmp_path / "segmented.mp4") == audio_span(tmp_path / "whole.mp4")
    assert np.array_equal(frames, whole_frames)  # H.264 at CRF 0 is lossless: the same frames exactly

    runs = runs_by_segment(tmp_path, job_id)
    segments = [k for k in runs if k != "join"]
    assert len(segments) == len(plan["segments"]) and all(len(r) == 2 for r in runs.values()), runs
    assert len({r[0]["pid"] for k, r in runs.items() if k != "join"}) > 1, "one worker made every segment"


def test_killed_worker_loses_only_its_segment(serve, worker, long_clip, tmp_path):
    first = worker(heartbeat_ttl=2)
    client = serve(redis_url=REDIS_URL, segment_seconds=1, retries=1, heartbeat_ttl=2)
    job_id = post_video(client, long_clip, {**PARAMS, "scale": 4}).json()["id"]

    def running_segment():
        runs = runs_by_segment(tmp_path, job_id)
        done = [k for k, r in runs.items() if [e["event"] for e in r] == ["start", "end"]]
        open_ = [k for k, r in runs.items() if [e["event"] for e in r] == ["start"]]
        return open_[0] if done and open_ else None

    killed = wait_for(running_segment, timeout=120, interval=0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    worker(heartbeat_ttl=2)
    body = wait_for(lambda: finished(client, job_id), timeout=180)
    assert body["state"] == "finished", body
    runs = runs_by_segment(tmp_path, job_id)
    twice = {k: [e["event"] for e in r] for k, r in runs.items() if [e["event"] for e in r] != ["start", "end"]}
    assert twice == {killed: ["start", "start", "end"]}, runs


def test_delete_stops_every_segment(serve, worker, long_clip, tmp_path, redis_db):
    worker()
    worker()
    client = serve(redis_url=REDIS_URL, segment_seconds=0.5)
    job_id = post_video(client, long_clip, {**PARAMS, "scale": 4}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["frames_done"] > 0, timeout=120)
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    folder = tmp_path / "data" / "jobs" / job_id
    assert not folder.exists()
    assert client.get(f"/jobs/{job_id}").status_code == 404

    def running_segments() -> list[str]:
        keys = redis_db.keys("rq:wip:*") + redis_db.keys("rq:StartedJobRegistry:*")
        return [m.decode() for k in keys for m in redis_db.zrange(k, 0, -1) if m.decode().startswith(job_id)]

    wait_for(lambda: not running_segments(), timeout=20)  # each stops at its next frame
    time.sleep(1)
    assert not running_segments() and not folder.exists(), "a segment ran on after DELETE"


def test_segmented_result_streams_while_made(serve, worker, long_clip, tmp_path):
    worker()
    worker()
    client = serve(redis_url=REDIS_URL, segment_seconds=0.5)
    streamed = tmp_path / "streamed.mp4"
    with (
        open(long_clip, "rb") as handle,
        client.stream(
            "POST",
            "/upsample",
            params={**PARAMS, "scale": 4},
            files={"file": ("in.mp4", handle, "video/mp4")},
            headers={"Accept": "video/mp4"},
        ) as response,
    ):
        assert response.status_code == 200
        job_id = response.headers["x-job-id"]
        chunks = response.iter_bytes()
        first = next(chunks)
        state = client.get(f"/jobs/{job_id}").json()
        assert first and state["state"] == "started", state["state"]
        assert state["progress"]["frames_done"] < state["progress"]["frames_total"]
        streamed.write_bytes(first + b"".join(chunks))
    assert wait_for(lambda: finished(client, job_id))["state"] == "finished"  # the join may end after the stream
    times, frames = video_frames(streamed)
    final_times, final = result_of(client, job_id, tmp_path / "final.mp4")
    assert np.allclose(times, final_times, atol=1e-6) and np.array_equal(frames, final)
    assert audio_span(streamed) == audio_span(tmp_path / "final.mp4")
    assert not list((tmp_path / "data" / "jobs" / job_id).glob(".live-*")), "the live join's file was left"


def test_embedded_mode_makes_the_segments_in_turn(serve, long_clip, tmp_path):
    client = serve(segment_seconds=1)
    job_id = post_video(client, long_clip, PARAMS).json()["id"]
    body = wait_for(lambda: finished(client, job_id), timeout=180)
    assert body["state"] == "finished" and body["progress"]["frames_done"] == 240, body
    folder = tmp_path / "data" / "jobs" / job_id
    assert len(json.loads((folder / "segments.json").read_text())["segments"]) == 4
    assert not (folder / "segments").exists()  # joined as they were made, then removed
    times, frames = result_of(client, job_id, tmp_path / "result.mp4")
    assert frames.shape == (240, 96, 128, 3) and np.allclose(np.diff(times), 1 / 60, atol=1e-4)
    assert audio_span(tmp_path / "result.mp4")[1] > 3.9


def test_segmented_decode_equals_one_decode(serve, worker, nrff_clip, tmp_path):
    _, stream = nrff_clip  # 16 frames at 30 fps
    worker()
    worker()
    client = serve(redis_url=REDIS_URL, segment_seconds=0.1)  # 3 frames a segment
    whole = serve(redis_url=REDIS_URL, segment_seconds=0)
    results = {}
    for name, gateway in (("segmented", client), ("whole", whole)):
        job_id = gateway.post("/decode", params={"frames": "2:15", "crf": 0}, content=stream).json()["id"]
        body = wait_for(lambda g=gateway, j=job_id: finished(g, j), timeout=120)
        assert body["state"] == "finished" and body["progress"]["frames_done"] == 13, body
        results[name] = result_of(gateway, job_id, tmp_path / f"{name}.mp4")
        if name == "segmented":
            plan = json.loads((tmp_path / "data" / "jobs" / job_id / "segments.json").read_text())
            assert len(plan["segments"]) == 5 and plan["origin"] == 2, plan  # frames 2-4, 5-7, ..., 14
    (times, frames), (whole_times, whole_frames) = results["segmented"], results["whole"]
    assert frames.shape == whole_frames.shape == (13, 64, 80, 3)
    assert np.allclose(times, whole_times, atol=1e-6)
    assert np.array_equal(frames, whole_frames)  # H.264 at CRF 0 is lossless: the same frames exactly


def test_segmented_slow_motion_streams_and_joins_with_its_sound_slowed(serve, worker, long_clip, tmp_path):
    """Slow motion through RQ segments: the live join a client streams and the workers' join both make 2x the
    frames at the input's rate, with the 4 s tone slowed to 8 s."""
    worker()
    worker()
    client = serve(redis_url=REDIS_URL, segment_seconds=0.5)
    streamed = tmp_path / "streamed.mp4"
    params = {**PARAMS, "time_factor": None, "slowmo": 2, "slowmo_audio": "keep"}
    with (
        open(long_clip, "rb") as handle,
        client.stream(
            "POST",
            "/upsample",
            params={k: v for k, v in params.items() if v is not None},
            files={"file": ("in.mp4", handle, "video/mp4")},
            headers={"Accept": "video/mp4"},
        ) as response,
    ):
        assert response.status_code == 200
        job_id = response.headers["x-job-id"]
        streamed.write_bytes(b"".join(response.iter_bytes()))
    assert wait_for(lambda: finished(client, job_id), timeout=180)["state"] == "finished"
    plan = json.loads((tmp_path / "data" / "jobs" / job_id / "segments.json").read_text())
    assert len(plan["segments"]) >= 4 and plan["slowmo"] == 2 and plan["audio"] is True, plan
    times, frames = video_frames(streamed)
    final_times, final = result_of(client, job_id, tmp_path / "final.mp4")
    assert frames.shape == final.shape == (240, 96, 128, 3)  # 120 input frames, 2x, at 30 fps: 8 s
    assert np.allclose(times, [i / 30 for i in range(240)], atol=1e-6) and np.allclose(final_times, times, atol=1e-6)
    for path in (streamed, tmp_path / "final.mp4"):
        start, seconds = audio_span(path)
        assert abs(start) < 0.05 and abs(seconds - 8.0) < 0.1, (path.name, start, seconds)
