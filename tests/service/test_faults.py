"""Faults a running stack showed: signals to idle workers, dead workers counted as alive (issue #40)."""

from __future__ import annotations

import logging
import signal
import time

import pytest

from tests.service.conftest import REDIS_URL, finished, post_video, wait_for


def ready_workers(client) -> int:
    """How many workers /readyz counts (0 when it answers 503)."""
    response = client.get("/readyz")
    if response.status_code != 200:
        return 0
    return int(response.json()["detail"].split()[0])


def test_an_idle_worker_stops_at_once_on_sigterm(serve, worker):
    """A warm shutdown of an idle worker ends the process at once (it used to start working again and wait
    for SIGKILL); the bound leaves room for a loaded machine."""
    client = serve(redis_url=REDIS_URL, heartbeat_ttl=4)
    proc = worker(heartbeat_ttl=4)
    wait_for(lambda: ready_workers(client) == 1, timeout=60)
    time.sleep(1)  # idle, waiting on its queue
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 3  # 0.5 s here, most of it the interpreter's teardown


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_readiness_counts_only_workers_whose_heartbeat_is_fresh(serve, worker, how):
    """A worker that died (SIGKILL) or left leaves /readyz and ``vinr_workers`` within two heartbeat TTLs
    and a few seconds, not when RQ's worker set is next cleaned."""
    client = serve(redis_url=REDIS_URL, heartbeat_ttl=2)
    alive, dying = worker(heartbeat_ttl=2), worker(heartbeat_ttl=2)
    wait_for(lambda: ready_workers(client) == 2, timeout=60)
    dying.send_signal(how)
    dying.wait(timeout=30)
    wait_for(lambda: ready_workers(client) == 1, timeout=2 * 2 + 5 + 5)
    assert "vinr_workers 1.0" in client.get("/metrics").text
    alive.send_signal(signal.SIGKILL)
    alive.wait(timeout=10)
    wait_for(lambda: client.get("/readyz").status_code == 503, timeout=15)


def test_a_service_result_has_the_timestamps_of_the_same_cli_run(serve, tmp_path, clip_with_audio, tiny_model_path):
    """The fragmented MP4 a job streams starts its video at 0 with exact intervals, as the CLI's plain MP4
    does, and its audio lasts as long (it started at the encoder's B-frame delay, 2 frames late)."""
    from service.cli import main
    from tests.media import audio_span

    client = serve()
    with open(clip_with_audio, "rb") as handle:
        job = client.post("/upsample", params={"scale": 2, "fps": 100, "model": "tiny"}, files={"file": handle})
    job_id = job.json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["state"] == "finished", timeout=120)
    served = tmp_path / "served.mp4"
    served.write_bytes(client.get(f"/jobs/{job_id}/result").content)
    made = tmp_path / "cli.mp4"
    assert (
        main(
            [
                "upsample",
                str(clip_with_audio),
                "-o",
                str(made),
                "--scale",
                "2",
                "--fps",
                "100",
                "--model",
                str(tiny_model_path),
                "--quiet",
            ]
        )
        == 0
    )
    times = {path: video_times(path) for path in (served, made)}
    for path in (served, made):
        assert times[path][0] == pytest.approx(0.0, abs=1e-6), path
        assert times[path][1] - times[path][0] == pytest.approx(0.01, abs=1e-4), path
    assert len(times[served]) == len(times[made])
    assert audio_span(served) == pytest.approx(audio_span(made), abs=1e-3)


def video_times(path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def test_docs_load_nothing_from_elsewhere_and_head_of_the_page_answers(serve):
    client = serve()
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text and "https://" not in page.text
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        asset = client.get(f"/docs/assets/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"] and len(asset.content) > 10_000
    assert client.get("/docs/assets/..%2Fcore.py").status_code == 404
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(("published", "warned"), [("127.0.0.1", False), ("", True)])
def test_the_no_keys_warning_is_about_where_the_gateway_is_reached(tmp_path, published, warned):
    """Inside a container the gateway listens on 0.0.0.0; compose says it is published on 127.0.0.1 only."""
    import os
    import subprocess
    import sys

    import httpx

    from tests.service.conftest import free_port

    port = free_port()
    env = {**os.environ, "VINR_DATA_DIR": str(tmp_path / "data"), "VINR_PUBLISHED_HOST": published}
    env.pop("VINR_API_KEYS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _answers(httpx, port), timeout=60)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert ("without VINR_API_KEYS" in err) is warned, err


def _answers(httpx, port) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def multipart(boundary: bytes, payload: bytes, close: bool = True) -> bytes:
    head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="in.mp4"\r\n'
    body = head + b"Content-Type: video/mp4\r\n\r\n" + payload + b"\r\n"
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


def test_a_multipart_header_name_split_across_reads_is_joined(serve, clip_with_audio):
    """``--XyZ\\r\\nContent-Dispo``, a pause, then the rest: the field is found (it was a 422)."""
    client = serve()
    body = multipart(b"XyZ", clip_with_audio.read_bytes())
    cut = body.index(b"Content-Dispo") + len(b"Content-Dispo")

    def slowly():
        yield body[:cut]
        time.sleep(0.5)
        yield body[cut:]

    response = client.post(
        "/upsample",
        params={"scale": 2, "model": "tiny"},
        content=slowly(),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 202, response.text


def test_an_unterminated_multipart_body_is_a_400(serve, clip_with_audio, tmp_path):
    client = serve()
    body = multipart(b"XyZ", clip_with_audio.read_bytes(), close=False)
    response = client.post(
        "/upsample",
        params={"scale": 2, "model": "tiny"},
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 400 and "closing boundary" in response.json()["detail"]
    assert not list((tmp_path / "data" / "jobs").glob("*"))  # nothing left behind


def test_a_bad_chunk_size_is_a_400_without_a_traceback(serve, caplog):
    import socket

    client = serve()
    port = client.base_url.port
    request = (
        b"POST /upsample?scale=2&model=tiny HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n4\r\nabcd\r\nzz\r\nxx\r\n0\r\n\r\n"
    )
    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate to the root
    uvicorn_log.addHandler(caplog.handler)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            answer = sock.recv(4096)
        time.sleep(0.5)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert answer.startswith(b"HTTP/1.1 400")
    assert "Exception in ASGI application" not in caplog.text


@pytest.mark.parametrize(("field", "value"), [("matrix", 0), ("color_range", 255)])
def test_a_bitstream_header_with_an_undocumented_colour_field_is_refused(field, value):
    from dataclasses import replace
    from fractions import Fraction

    from models.bitstream import container

    header = replace(container.Header("nrff", 64, 48, 2, Fraction(25)), **{field: value})
    with pytest.raises(container.BitstreamError, match="colour"):
        container.check_header(header)


def job_runs(tmp_path, job_id) -> list[dict]:
    import json

    path = tmp_path / "data" / "jobs" / job_id / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_restarted_embedded_gateway_still_serves_the_jobs_that_finished(serve, clip_with_audio):
    """A new embedded gateway on the same data (a restart) has no record of earlier jobs: the folders say
    they finished, so they read finished and their results answer (they read failed, and /result 409)."""
    first = serve()
    job_id = post_video(first, clip_with_audio, {"scale": 2, "model": "tiny"}).json()["id"]
    wait_for(lambda: finished(first, job_id), timeout=120)
    restarted = serve()
    body = restarted.get(f"/jobs/{job_id}").json()
    assert body["state"] == "finished" and body["progress"]["frames_done"] == 30, body
    result = restarted.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200 and len(result.content) > 1000


def test_redis_that_loses_its_data_mid_job_loses_no_state(serve, worker, own_redis, long_clip, clip_with_audio):
    """Redis restarted empty (no append-only file): a finished job stays finished with its result, a running
    one reads started (not failed, "record is gone") and then finished."""
    redis = own_redis(appendonly=False)
    worker(heartbeat_ttl=2, redis_url=redis.url)
    client = serve(redis_url=redis.url, heartbeat_ttl=2)
    wait_for(lambda: client.get("/readyz").status_code == 200)
    done = post_video(client, clip_with_audio, {"scale": 2, "model": "tiny"}).json()["id"]
    wait_for(lambda: finished(client, done), timeout=120)
    running = post_video(client, long_clip, {"scale": 4, "time_factor": 3, "model": "tiny"}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{running}").json()["progress"]["frames_done"] > 0)
    redis.stop()
    redis.start()
    assert client.get(f"/jobs/{running}").json()["state"] == "started"
    assert client.get(f"/jobs/{done}").json()["state"] == "finished"
    assert client.get(f"/jobs/{done}/result").status_code == 200
    body = wait_for(lambda: finished(client, running), timeout=180)
    assert body["state"] == "finished", body


def test_a_finished_job_queued_again_is_not_run_again(serve, worker, clip_with_audio, tmp_path):
    """Redis restored from an out-of-date append-only file queues a finished job again: the worker finds
    its folder finished and does not make it again."""
    from service.settings import Settings

    client = serve(redis_url=REDIS_URL)
    worker()
    job_id = post_video(client, clip_with_audio, {"scale": 2, "model": "tiny"}).json()["id"]
    assert wait_for(lambda: finished(client, job_id), timeout=120)["state"] == "finished"
    before = (tmp_path / "data" / "jobs" / job_id / "result.mp4").read_bytes()
    backend = client_backend(Settings(redis_url=REDIS_URL, data_dir=tmp_path / "data", queue=client_queue(client)))
    backend.put("upsample", job_id, str(tmp_path / "data" / "jobs" / job_id), {"scale": 2, "model": "tiny"})
    wait_for(lambda: any(r["event"] == "skipped" for r in job_runs(tmp_path, job_id)), timeout=60)
    assert [r["event"] for r in job_runs(tmp_path, job_id)] == ["start", "end", "skipped"]
    assert wait_for(lambda: finished(client, job_id), timeout=30)["state"] == "finished"
    assert (tmp_path / "data" / "jobs" / job_id / "result.mp4").read_bytes() == before


def client_backend(settings):
    from service.queue import RQBackend

    return RQBackend(settings)


def client_queue(client) -> str:
    return client.get("/readyz").json()["detail"].split("'")[1]


def test_a_killed_gateways_half_upload_is_removed_when_a_gateway_starts(tmp_path, models_dir):
    """SIGKILL a gateway mid-upload: the next gateway on the data removes the folder as it starts (it was
    listed as a failed job, "record gone", until the 24 h sweep)."""
    import os
    import socket
    import subprocess
    import sys

    import httpx

    from tests.service.conftest import free_port

    env = {**os.environ, "VINR_DATA_DIR": str(tmp_path / "data"), "VINR_MODELS_DIR": str(models_dir)}
    jobs = tmp_path / "data" / "jobs"

    def gateway() -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env)
        wait_for(lambda: _answers(httpx, port), timeout=60)
        return proc, port

    first, port = gateway()
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(
            b"POST /upsample?model=tiny HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b"0" * 1000
        )
        wait_for(lambda: jobs.is_dir() and any(jobs.iterdir()), timeout=10)
        first.kill()
        first.wait(timeout=10)
    finally:
        sock.close()
    assert len(list(jobs.iterdir())) == 1
    second, port = gateway()
    try:
        assert list(jobs.iterdir()) == []
        assert httpx.get(f"http://127.0.0.1:{port}/jobs").json()["jobs"] == []
    finally:
        second.terminate()
        second.wait(timeout=30)


def test_uploads_are_capped_per_client_address_without_keys(serve, clip_with_audio, tmp_path):
    """Without API keys a slow client holds its own address's upload slots, not everyone's."""
    import socket

    import httpx

    client = serve(max_concurrent_uploads_per_key=1)
    port = client.base_url.port
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /upsample?model=tiny HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n0123")
    try:
        wait_for(lambda: any((tmp_path / "data" / "jobs").glob("*")), timeout=10)
        assert post_video(client, clip_with_audio, {"model": "tiny"}).status_code == 429
        other = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60
        )
        assert post_video(other, clip_with_audio, {"model": "tiny"}).status_code == 202
    finally:
        sock.close()


def test_an_upload_trickling_under_the_minimum_rate_is_dropped(serve, tmp_path):
    """One small chunk a second keeps an upload from going idle; under VINR_UPLOAD_MIN_RATE it is a 408."""
    import socket

    client = serve(upload_idle_timeout=2, upload_min_rate=10_000)
    sock = socket.create_connection(("127.0.0.1", client.base_url.port))
    sock.sendall(b"POST /upsample?model=tiny HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    started = time.monotonic()
    answer = b""
    try:
        sock.settimeout(0.5)
        while not answer and time.monotonic() - started < 20:
            sock.sendall(b"0" * 100)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                time.sleep(0.5)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"minimum" in answer, answer
    assert time.monotonic() - started < 10
    assert not list((tmp_path / "data" / "jobs").glob("*"))
