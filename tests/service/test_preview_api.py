"""What the page builds on, over real HTTP: ``POST /preview``, ``POST /probe``, ``GET /limits``, ``GET /jobs``."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from tests.service.conftest import REDIS_URL, ROOT, free_port, post_video, wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "bikes.mp4"


def post_file(client, route: str, path, params=None, **kwargs):
    with open(path, "rb") as handle:
        return client.post(route, params=params, files={"file": ("in.mp4", handle, "video/mp4")}, **kwargs)


def png_image(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format="png_pipe") as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def from_data_url(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return png_image(base64.b64decode(url[len(prefix) :]))


def test_preview_png_and_comparison(serve, clip_with_audio, tmp_path):
    client = serve()
    params = {"scale": 2.5, "time_factor": 2, "at": 0.5, "model": "tiny"}
    response = post_file(client, "/preview", clip_with_audio, params)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png", response.text
    assert response.headers["x-preview-index"] == "30" and response.headers["x-output-size"] == "160x120"
    assert png_image(response.content).shape == (120, 160, 3)
    compared = post_file(client, "/preview", clip_with_audio, {**params, "compare": "bicubic"})
    body = compared.json()
    assert (body["index"], body["width"], body["height"], body["frames"]) == (30, 160, 120, 60)
    image, bicubic = from_data_url(body["image"]), from_data_url(body["compare"])
    assert image.shape == bicubic.shape == (120, 160, 3) and np.array_equal(image, png_image(response.content))
    assert not any((tmp_path / "data" / "previews").iterdir()), "a preview's upload was left behind"


def test_preview_errors_say_why(serve, clip_with_audio, tmp_path):
    client = serve(max_output_pixels=100 * 100)
    cases = [
        ({"scale": 9}, "scale must be at most 8, got 9"),
        ({"scale": 2, "model": "nope"}, "unknown model 'nope'"),
        ({"scale": 2, "at": -1}, "at must be at least 0, got -1"),
        ({"scale": 2, "compare": "lanczos"}, "compare must be 'bicubic', got 'lanczos'"),
        ({"scale": 2, "model": "tiny"}, "passes VINR_MAX_OUTPUT_PIXELS (10000)"),
    ]
    for params, message in cases:
        response = post_file(client, "/preview", clip_with_audio, params)
        assert response.status_code == 422 and message in response.json()["detail"], (params, response.text)
    not_video = tmp_path / "notes.mp4"
    not_video.write_bytes(b"plain text, not a video" * 100)
    response = post_file(client, "/preview", not_video, {"scale": 1, "model": "tiny"})
    assert response.status_code == 422 and "cannot read" in response.json()["detail"], response.text
    assert str(tmp_path) not in response.text
    assert not any((tmp_path / "data" / "previews").iterdir())
    slow = serve(preview_timeout=0.01)
    response = post_file(slow, "/preview", clip_with_audio, {"scale": 2, "model": "tiny"})
    assert response.status_code == 504 and "VINR_PREVIEW_TIMEOUT" in response.json()["detail"]
    off = serve(preview_concurrency=0)
    response = post_file(off, "/preview", clip_with_audio, {"scale": 2, "model": "tiny"})
    assert response.status_code == 503 and "VINR_PREVIEW_CONCURRENCY=0" in response.json()["detail"]


def test_probe_and_limits(serve, clip_with_audio):
    client = serve(api_keys=["key-one"], max_input_seconds=120)
    limits = client.get("/limits").json()  # public: the page shows it before a key is entered
    assert limits["api_key_required"] is True and limits["max_input_seconds"] == 120 and "tiny" in limits["models"]
    assert post_file(client, "/probe", clip_with_audio).status_code == 401
    info = post_file(client, "/probe", clip_with_audio, headers={"X-API-Key": "key-one"}).json()
    assert (info["width"], info["height"], info["fps"], info["audio"]) == (64, 48, 30.0, ["aac"])
    assert abs(info["duration"] - 1.0) < 0.1


def test_job_list_shows_only_the_callers_jobs(serve, clip_with_audio):
    client = serve(api_keys=["key-one", "key-two"])
    one, two = {"X-API-Key": "key-one"}, {"X-API-Key": "key-two"}
    params = {"scale": 1.5, "model": "tiny"}
    mine = [post_video(client, clip_with_audio, params, headers=one).json()["id"] for _ in range(3)]
    theirs = post_video(client, clip_with_audio, params, headers=two).json()["id"]
    for job_id in mine:
        wait_for(lambda j=job_id: client.get(f"/jobs/{j}", headers=one).json()["state"] == "finished")
    first = client.get("/jobs", params={"limit": 2}, headers=one).json()
    assert first["total"] == 3 and [j["id"] for j in first["jobs"]] == mine[::-1][:2], first
    assert first["jobs"][0]["state"] == "finished" and first["next"] == "/jobs?limit=2&offset=2"
    rest = client.get(first["next"], headers=one).json()
    assert [j["id"] for j in rest["jobs"]] == [mine[0]] and rest["next"] is None
    assert [j["id"] for j in client.get("/jobs", headers=two).json()["jobs"]] == [theirs]
    assert client.get("/jobs").status_code == 401
    assert client.get("/jobs", params={"limit": 0}, headers=one).status_code == 422


@pytest.fixture
def gateway_process(tmp_path, models_dir, queue_name):
    """``vinr serve`` in a process of its own (as deployed; nothing of the test process's state in it)."""
    procs = []

    def start(redis: bool) -> httpx.Client:
        port = free_port()
        env = {**os.environ, "VINR_DATA_DIR": str(tmp_path / "data"), "VINR_MODELS_DIR": str(models_dir)}
        env.update({"VINR_QUEUE": queue_name, "VINR_DEVICE": "cpu"})
        if redis:
            env["VINR_REDIS_URL"] = REDIS_URL
        log = (tmp_path / f"serve-{len(procs)}.log").open("wb")
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port)]
        procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        wait_for(lambda: responds(client), timeout=60)
        return client

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def responds(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.timing
@pytest.mark.parametrize("mode", ["embedded", "rq"])
def test_preview_is_quick_while_a_long_job_runs(mode, gateway_process, worker):
    """The page's promise: a 3.5x frame of the bundled sample in under 5 s, even beside a running job
    (in the gateway's own process, or in a worker process on the same machine)."""
    if mode == "rq":
        worker()
    client = gateway_process(redis=mode == "rq")
    job = post_video(client, SAMPLE, {"scale": 3.5, "time_factor": 4}).json()
    wait_for(lambda: client.get(f"/jobs/{job['id']}").json()["state"] == "started", timeout=60)
    seconds = []
    for at in (0.5, 1.3):
        started = time.perf_counter()
        response = post_file(client, "/preview", SAMPLE, {"scale": 3.5, "time_factor": 4, "at": at})
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    state = client.get(f"/jobs/{job['id']}").json()["state"]
    client.delete(f"/jobs/{job['id']}")
    print(f"{mode}: previews beside a running job: {', '.join(f'{s:.2f} s' for s in seconds)}")
    assert state == "started", "the long job ended before the previews did; the test measured nothing"
    assert max(seconds) < 5, seconds
