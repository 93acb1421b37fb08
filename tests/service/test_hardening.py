"""The service against bad input, Redis outages and stuck pipelines: each test reproduces one defect.

Real gateways over real HTTP, real Redis (the shared test database, or a server of the test's own
that it stops and restarts), real ``vinr worker`` and ``vinr serve`` processes, generated videos.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import httpx
import pytest

from models.bitstream import container
from service.main import create_app, sweep
from service.settings import Settings
from service.storage import JobFiles
from tests.media import texture_frames, write_clip
from tests.processes import open_files_under
from tests.service.conftest import ROOT, finished, free_port, post_video, wait_for

DEAD_REDIS = "redis://127.0.0.1:1/0"
"""A Redis URL nobody answers (connections are refused at once)."""


def job_folders(tmp_path) -> list[Path]:
    jobs = tmp_path / "data" / "jobs"
    return sorted(jobs.iterdir()) if jobs.is_dir() else []


# --- 1. what the chosen encoder cannot take is refused at submission --------------------------------


@pytest.mark.parametrize(("codec", "size", "words"), [("av1", 2, "at least 4x4"), ("hevc", 32, "at least 64x64")])
def test_sizes_the_encoder_refuses_are_a_422(serve, tmp_path, codec, size, words):
    clip = write_clip(tmp_path / "small.mp4", texture_frames(4, size, size))
    response = post_video(serve(), clip, {"codec": codec, "fps": 1000, "model": "tiny"})
    assert response.status_code == 422 and words in response.json()["detail"], response.text
    assert job_folders(tmp_path) == []


def test_sigterm_stops_a_gateway_with_a_running_job(tmp_path, long_clip, models_dir):
    port = free_port()
    env = {**os.environ, "VINR_DATA_DIR": str(tmp_path / "data"), "VINR_MODELS_DIR": str(models_dir)}
    env.pop("VINR_REDIS_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        wait_for(lambda: _answers(client), timeout=60)
        job = post_video(client, long_clip, {"scale": 4, "time_factor": 4, "model": "tiny"}).json()
        wait_for(lambda: client.get(f"/jobs/{job['id']}").json()["progress"]["frames_done"] > 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
    finally:
        if proc.poll() is None:
            proc.kill()


def _answers(client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_delete_of_a_running_embedded_job_stops_it_and_frees_its_files(serve, long_clip, tmp_path):
    client = serve()
    job_id = post_video(client, long_clip, {"scale": 4, "time_factor": 4, "model": "tiny"}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["frames_done"] > 0)
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    # the next job runs: the embedded worker is free again
    follow_up = post_video(client, long_clip, {"model": "tiny"}).json()["id"]
    assert wait_for(lambda: finished(client, follow_up))["state"] == "finished"
    assert open_files_under(tmp_path / "data" / "jobs" / job_id) == []


# --- 2. Redis outages ------------------------------------------------------------------------------


def test_gateway_answers_503_with_retry_after_while_redis_is_down(serve, clip_with_audio, tmp_path):
    client = serve(redis_url=DEAD_REDIS)
    posted = post_video(client, clip_with_audio, {"model": "tiny"})
    assert posted.status_code == 503 and posted.headers["retry-after"], posted.text
    assert "Redis" in posted.json()["detail"]
    assert job_folders(tmp_path) == []  # no orphan folder
    files = JobFiles(tmp_path / "data", "A" * 22)
    files.create({"kind": "upsample", "owner": "", "params": {}})
    files.uploaded()
    for path in ("/jobs/" + files.id, f"/jobs/{files.id}/result", "/metrics"):
        response = client.get(path)
        assert response.status_code == 503 and response.headers["retry-after"], (path, response.text)
    assert client.get("/readyz").status_code == 503


def test_queued_jobs_survive_a_redis_restart(serve, worker, own_redis, clip_with_audio):
    redis = own_redis()
    client = serve(redis_url=redis.url)
    ids = [post_video(client, clip_with_audio, {"model": "tiny"}).json()["id"] for _ in range(3)]
    redis.stop()
    assert client.get(f"/jobs/{ids[0]}").status_code == 503
    redis.start()
    worker(redis_url=redis.url)
    for job_id in ids:
        assert wait_for(lambda j=job_id: finished(client, j), timeout=120)["state"] == "finished"


def test_a_running_job_outlives_a_redis_outage_and_runs_once(serve, worker, own_redis, long_clip, tmp_path):
    redis = own_redis()
    worker(heartbeat_ttl=2, redis_url=redis.url)
    client = serve(redis_url=redis.url, heartbeat_ttl=2)
    wait_for(lambda: client.get("/readyz").status_code == 200)
    job_id = post_video(client, long_clip, {"scale": 4, "time_factor": 3, "model": "tiny"}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["frames_done"] > 0)
    redis.stop()
    time.sleep(6)  # three heartbeat TTLs without Redis
    redis.start()
    body = wait_for(lambda: finished(client, job_id), timeout=180)
    assert body["state"] == "finished", body
    runs = [json.loads(line) for line in (tmp_path / "data" / "jobs" / job_id / "attempts.jsonl").open()]
    assert [r["event"] for r in runs] == ["start", "end"], runs
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)


def test_workers_register_again_after_redis_loses_its_data(serve, worker, own_redis):
    redis = own_redis(appendonly=False)
    worker(heartbeat_ttl=2, redis_url=redis.url)
    client = serve(redis_url=redis.url, heartbeat_ttl=2)
    wait_for(lambda: client.get("/readyz").status_code == 200)
    redis.stop()
    redis.start()  # empty: the worker's registration is gone
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30)


# --- 3. bad parameters and bodies: 4xx with a message, never 500 -----------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"fps": "inf"},
        {"fps": "nan"},
        {"time_factor": "inf"},
        {"time_factor": "1e308"},
        {"scale": "-inf"},
        {"width": "9" * 400},
        {"height": "9" * 400},
    ],
)
def test_non_finite_and_huge_parameters_are_a_422(serve, clip_with_audio, params):
    response = post_video(serve(), clip_with_audio, {"model": "tiny", **params})
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], str) and next(iter(params)) in response.json()["detail"]


def test_a_malformed_multipart_body_is_a_400(serve, tmp_path):
    client = serve()
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=xyz"):
        response = client.post("/upsample", content=b"abc", headers={"Content-Type": content_type})
        assert response.status_code in (400, 422) and response.json()["detail"], response.text
    assert job_folders(tmp_path) == []


def test_a_non_ascii_api_key_is_a_401(serve):
    client = serve(api_keys=["key-one"])
    response = client.get("/jobs/" + "A" * 22, headers={"X-API-Key": "\xe9t\xe9".encode("latin-1")})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    auth = client.get("/metrics", headers={"Authorization": b"Bearer \xff"})
    assert auth.status_code == 401


def test_a_405_lists_every_method_of_the_path(serve):
    response = serve().request("OPTIONS", "/jobs/" + "A" * 22)
    assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET"


def test_openapi_documents_the_422_the_service_sends(serve):
    client = serve()
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "422" in operation["responses"]:
                body = operation["responses"]["422"]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/Problem"}, (path, method)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    sent = client.post("/upsample", params={"fps": "inf"}, content=b"x")
    assert sent.status_code == 422 and sent.json() == {"detail": "fps must be at most 1000, got inf", "field": "fps"}


# --- 4. /decode streams its upload to disk and checks it with bounded memory ----------------------


def test_decode_upload_is_checked_with_bounded_memory(serve, tmp_path):
    client = serve()
    size = 48 << 20
    header = container.HEADER.pack(container.MAGIC, 1, 1, 1, 64, 64, 8, 25, 1, 1, 1, 0)
    head = header + zlib.crc32(header).to_bytes(4, "little")
    head += container.SECTION.pack(b"WGTS", size, 0)  # a wrong CRC, found only after reading it all

    def body():
        yield head
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            yield chunk

    tracemalloc.start()
    try:
        response = client.post("/decode", content=body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 422 and "CRC" in response.json()["detail"], response.text
    assert peak < 16 << 20, f"peak Python allocation {peak >> 20} MiB while checking a {size >> 20} MiB upload"


# --- 5. /decode applies the output limits to what the bitstream declares ------------------------


def test_decode_refuses_outputs_over_the_limits(serve, nrff_clip, tmp_path):
    _, stream = nrff_clip
    response = serve(max_output_pixels=1000).post("/decode", content=stream)
    assert response.status_code == 422 and "VINR_MAX_OUTPUT_PIXELS" in response.json()["detail"]
    response = serve(max_output_frames=4).post("/decode", content=stream)
    assert response.status_code == 422 and "VINR_MAX_OUTPUT_FRAMES" in response.json()["detail"]
    assert serve(max_output_frames=4).post("/decode", params={"frames": "0:4"}, content=stream).status_code == 202
    assert len(job_folders(tmp_path)) == 1


def test_cli_decode_applies_the_limits_unless_told_not_to(nrff_clip, tmp_path):
    _, stream = nrff_clip
    source = tmp_path / "clip.nrff"
    source.write_bytes(stream)
    env = {**os.environ, "VINR_MAX_OUTPUT_PIXELS": "1000"}
    command = [sys.executable, "-m", "service.cli", "decode", str(source), "--quiet", "-o"]
    refused = subprocess.run([*command, str(tmp_path / "a.mp4")], env=env, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode == 2 and "--no-output-limits" in refused.stderr, refused.stderr
    forced = subprocess.run(
        [*command, str(tmp_path / "b.mp4"), "--no-output-limits"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert forced.returncode == 0, forced.stderr


# --- 7. slow or stalled uploads ----------------------------------------------------------------------


def stalled_upload(port: int, path: str = "/upsample?model=tiny") -> socket.socket:
    """A client that sends headers and a few bytes of a 1 MB body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nContent-Length: 1000000\r\n\r\n".encode()
        + b"0123456789"
    )
    return sock


def test_a_stalled_upload_is_dropped_with_408(serve, tmp_path):
    client = serve(upload_idle_timeout=1)
    sock = stalled_upload(client.base_url.port)
    try:
        sock.settimeout(20)
        answer = sock.recv(4096).decode()
    finally:
        sock.close()
    assert answer.startswith("HTTP/1.1 408"), answer
    assert job_folders(tmp_path) == []


def test_concurrent_uploads_past_the_limit_get_429(serve, clip_with_audio, tmp_path):
    client = serve(max_concurrent_uploads_per_key=1, upload_idle_timeout=30)
    sock = stalled_upload(client.base_url.port)
    try:
        wait_for(lambda: len(job_folders(tmp_path)) == 1, timeout=10)
        response = post_video(client, clip_with_audio, {"model": "tiny"})
        assert response.status_code == 429 and response.headers["retry-after"], response.text
    finally:
        sock.close()
    wait_for(lambda: post_video(client, clip_with_audio, {"model": "tiny"}).status_code == 202, timeout=30)


# --- 8. smaller ones -----------------------------------------------------------------------------


def corrupt_keyframes(library: bytes) -> bytes:
    """The library with its keyframe streams replaced by noise, every CRC recomputed (so only decoding finds it)."""
    stream = container.parse(library)
    keyf = bytearray(stream.sections["KEYF"])
    count = int.from_bytes(keyf[:4], "little")
    first = int.from_bytes(keyf[4:8], "little")
    keyf[first + 4 :] = bytes((i * 37) % 251 for i in range(len(keyf) - first - 4))
    stream.sections["KEYF"] = bytes(keyf)
    assert count >= 1
    return container.write(stream)


def test_a_library_with_corrupt_keyframes_is_refused(serve, dnerv_library, tmp_path):
    _, library = dnerv_library
    bad = corrupt_keyframes(library)
    response = serve().post("/decode", content=bad)
    assert response.status_code == 422 and "keyframes" in response.json()["detail"], response.text
    source = tmp_path / "bad.dnerv"
    source.write_bytes(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "decode", str(source), "-o", str(tmp_path / "x.mp4"), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr


def test_folders_without_a_record_are_swept(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", result_ttl=60, failure_ttl=60)
    app = create_app(settings)
    orphan = tmp_path / "data" / "jobs" / ("B" * 22)
    orphan.mkdir(parents=True)
    (orphan / "input").write_bytes(b"x")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    fresh = tmp_path / "data" / "jobs" / ("C" * 22)
    fresh.mkdir()
    sweep(app)
    assert not orphan.exists() and fresh.exists()


def test_error_messages_hold_no_server_paths(serve, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    response = post_video(serve(), garbage, {"model": "tiny"})
    assert response.status_code == 422 and "/" not in response.json()["detail"].replace("a/v", ""), response.text


def test_job_files_are_private(serve, clip_with_audio, tmp_path):
    client = serve()
    job_id = post_video(client, clip_with_audio, {"model": "tiny"}).json()["id"]
    assert wait_for(lambda: finished(client, job_id))["state"] == "finished"
    folder = tmp_path / "data" / "jobs" / job_id
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("input", "job.json", "result.mp4", "attempts.jsonl"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


def test_metrics_need_a_key_when_keys_are_set(serve):
    client = serve(api_keys=["key-one"])
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": "key-one"}).status_code == 200
    assert serve(api_keys=["key-one"], metrics_public=True).get("/metrics").status_code == 200


def test_a_dead_workers_partial_result_is_removed(serve, worker, long_clip, tmp_path):
    from tests.service.conftest import kill_worker_mid_job

    client, job_id = kill_worker_mid_job(serve, worker, long_clip, retries=0)
    assert wait_for(lambda: finished(client, job_id), timeout=30)["state"] == "failed"
    wait_for(lambda: not (tmp_path / "data" / "jobs" / job_id / "result.mp4").exists(), timeout=15)
