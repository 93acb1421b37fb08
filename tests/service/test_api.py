"""The HTTP API end to end: real HTTP, real Redis, real worker processes, real video files."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from tests.service.conftest import REDIS_URL, finished, kill_worker_mid_job, post_video, wait_for
from worker.states import State

JOB_STATES = tuple(state.value for state in State)


def check_upload_to_result(client, clip, tmp_path):
    response = post_video(client, clip, {"scale": 2, "fps": 60, "model": "tiny"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}" and job["state"] in JOB_STATES
    body = wait_for(lambda: finished(client, job["id"]))
    assert body["state"] == "finished", body
    assert body["progress"]["frames_done"] == body["progress"]["frames_total"] == 60
    result = client.get(f"/jobs/{job['id']}/result")
    assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
    # saved under the upload's name (post_video sends in.mp4) and what was made of it
    assert 'filename="in_vinr_128x96_60fps.mp4"' in result.headers["content-disposition"]
    out = tmp_path / "result.mp4"
    out.write_bytes(result.content)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (128, 96)
        assert sum(1 for _ in container.decode(video)) == 60
    ranged = client.get(f"/jobs/{job['id']}/result", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == result.content[:100]
    return job["id"]


def test_upload_progress_result_over_rq(serve, worker, clip_with_audio, tmp_path):
    worker(env={"VINR_BF16": "1"})  # bfloat16 convolutions where the CPU has them natively, else float32
    client = serve(redis_url=REDIS_URL)
    wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60)
    job_id = check_upload_to_result(client, clip_with_audio, tmp_path)
    events = client.get(f"/jobs/{job_id}/events").text
    assert "event: progress" in events and events.rstrip().endswith('data: {"state": "finished"}')
    metrics = client.get("/metrics").text
    assert 'vinr_jobs{state="finished"} 1' in metrics and "vinr_workers 1" in metrics
    check_histograms(metrics)


def check_histograms(metrics: str) -> None:
    """The job ran by its worker was timed, and the gateway timed the request that made it."""
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
    assert float(samples['vinr_job_duration_seconds_count{kind="upsample",state="finished"}']) >= 1
    assert float(samples['vinr_job_duration_seconds_bucket{kind="upsample",le="+Inf",state="finished"}']) >= 1
    upload = 'vinr_http_request_duration_seconds_count{method="POST",route="/upsample",status="202"}'
    assert float(samples[upload]) == 1


def test_upload_progress_result_embedded(serve, clip_with_audio, tmp_path):
    client = serve()
    assert client.get("/readyz").json()["status"] == "ok"
    check_upload_to_result(client, clip_with_audio, tmp_path)
    check_histograms(client.get("/metrics").text)


def test_streamed_result_starts_before_the_job_ends(serve, worker, long_clip):
    worker()
    client = serve(redis_url=REDIS_URL)
    with (
        open(long_clip, "rb") as handle,
        client.stream(
            "POST",
            "/upsample",
            params={"scale": 4, "time_factor": 4, "model": "tiny"},
            files={"file": ("in.mp4", handle, "video/mp4")},
            headers={"Accept": "video/mp4"},
        ) as response,
    ):
        assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
        job_id = response.headers["x-job-id"]
        chunks = response.iter_bytes()
        first = next(chunks)
        state = client.get(f"/jobs/{job_id}").json()["state"]
        assert first and state in ("queued", "started")
        rest = b"".join(chunks)
    assert first[4:8] == b"ftyp" and len(first) + len(rest) > 1000
    assert finished(client, job_id)["state"] == "finished"


def test_delete_stops_a_running_job(serve, worker, long_clip, redis_db):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    worker()
    client = serve(redis_url=REDIS_URL)
    job_id = post_video(client, long_clip, {"scale": 4, "time_factor": 4, "model": "tiny"}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{job_id}").json()["progress"]["frames_done"] > 0)
    assert client.delete(f"/jobs/{job_id}").status_code == 204
    assert client.get(f"/jobs/{job_id}").status_code == 404
    job = Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer)
    wait_for(lambda: job.get_status(refresh=True) == "failed", timeout=15)
    assert "canceled" in job.latest_result().exc_string, job.latest_result().exc_string[-800:]


def test_killed_worker_job_without_retries_fails_clearly(serve, worker, long_clip):
    client, job_id = kill_worker_mid_job(serve, worker, long_clip, retries=0)
    body = wait_for(lambda: finished(client, job_id), timeout=30)
    assert body["state"] == "failed" and "worker" in body["error"] and "died" in body["error"]


def no_job_folders(tmp_path) -> bool:
    jobs = tmp_path / "data" / "jobs"
    return not jobs.exists() or not list(jobs.iterdir())


def test_an_upload_past_the_size_limit_is_a_413(serve, clip_with_audio, tmp_path):
    too_big = post_video(serve(max_upload_bytes=1000), clip_with_audio, {"scale": 2, "model": "tiny"})
    assert too_big.status_code == 413 and "VINR_MAX_UPLOAD_BYTES" in too_big.json()["detail"]
    assert no_job_folders(tmp_path)


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"fps": 120, "model": "tiny"}, "VINR_MAX_OUTPUT_FRAMES"),
        ({"scale": 30, "model": "tiny"}, "scale"),
        ({"model": "../etc/passwd"}, "unknown model"),
        ({"encoder": "nvenc", "model": "tiny"}, "NVENC was asked for"),
    ],
    ids=["too many output frames", "scale out of range", "unknown model", "NVENC where it cannot open"],
)
def test_parameters_that_cannot_be_served_are_a_422(serve, clip_with_audio, tmp_path, params, detail):
    response = post_video(serve(max_output_frames=50), clip_with_audio, params)
    assert response.status_code == 422 and detail in response.json()["detail"]
    assert no_job_folders(tmp_path)  # refused uploads leave nothing behind


def test_an_unreadable_video_is_a_422(serve, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    bad = post_video(serve(), garbage, {"model": "tiny"})
    assert bad.status_code == 422 and "cannot read" in bad.json()["detail"]
    assert no_job_folders(tmp_path)


def test_a_request_without_a_video_is_a_422(serve):
    assert serve().post("/upsample", params={"model": "tiny"}).status_code == 422


@pytest.mark.parametrize("job_id", ["A" * 22, "..%2F..%2Fetc"], ids=["unknown", "path traversal"])
def test_unknown_or_malformed_job_ids_are_a_404(serve, job_id):
    assert serve().get("/jobs/" + job_id).status_code == 404


def test_a_decode_upload_that_is_no_bitstream_is_a_415(serve, tmp_path):
    assert serve().post("/decode", content=b"NOTNRFF0" + b"\0" * 100).status_code == 415
    assert no_job_folders(tmp_path)


def test_embedded_cancel_stops_a_running_job_and_a_queued_one(serve, long_clip):
    client = serve()
    running = post_video(client, long_clip, {"scale": 4, "time_factor": 4, "model": "tiny"}).json()["id"]
    queued = post_video(client, long_clip, {"scale": 2, "model": "tiny"}).json()["id"]
    wait_for(lambda: client.get(f"/jobs/{running}").json()["state"] == "started")
    assert client.get(f"/jobs/{queued}").json()["state"] == "queued"  # one job at a time when embedded
    assert client.delete(f"/jobs/{queued}").status_code == 204
    assert client.delete(f"/jobs/{running}").status_code == 204
    for job_id in (running, queued):
        assert client.get(f"/jobs/{job_id}").status_code == 404  # its folder is gone
    # the worker thread is free again: a new job runs to its end
    done = post_video(client, long_clip, {"scale": 1, "model": "tiny"}).json()["id"]
    assert wait_for(lambda: finished(client, done), timeout=120)["state"] == "finished"


def test_raw_body_upload_and_api_keys(serve, clip_with_audio):
    client = serve(api_keys=["key-one", "key-two"])
    assert client.get("/jobs/" + "A" * 22).status_code == 401
    one, two = {"Authorization": "Bearer key-one"}, {"X-API-Key": "key-two"}
    response = client.post("/upsample", params={"model": "tiny"}, content=clip_with_audio.read_bytes(), headers=one)
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert client.get(f"/jobs/{job_id}", headers=one).status_code == 200
    assert client.get(f"/jobs/{job_id}", headers=two).status_code == 404
    assert client.delete(f"/jobs/{job_id}", headers=two).status_code == 404
    assert client.get(f"/jobs/{job_id}", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_openapi_documents_every_model(serve):
    schema = serve().get("/openapi.json").json()
    assert {"JobOut", "Problem", "Progress", "Health"} <= set(schema["components"]["schemas"])
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert operation.get("description") or operation.get("summary"), (path, method)
            assert operation["responses"], (path, method)
    body = schema["paths"]["/upsample"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(body)


def decoded_result(client, params: dict, stream: bytes, tmp_path) -> list:
    """POST /decode, wait for the job, and decode its result's frames."""
    response = client.post("/decode", params=params, content=stream)
    assert response.status_code == 202, response.text
    body = wait_for(lambda: finished(client, response.json()["id"]))
    assert body["state"] == "finished", body
    out = tmp_path / f"{body['id']}.mp4"
    out.write_bytes(client.get(f"/jobs/{body['id']}/result").content)
    with av.open(str(out)) as container:
        return list(container.decode(video=0))


def test_decode_endpoint_returns_the_chosen_frames(serve, nrff_clip, tmp_path):
    _, stream = nrff_clip
    client = serve()
    frames = decoded_result(client, {"frames": "0:8"}, stream, tmp_path)
    assert len(frames) == 8 and (frames[0].width, frames[0].height) == (80, 64)
    broken = client.post("/decode", content=stream[:-5])
    assert broken.status_code == 422 and "malformed bitstream" in broken.json()["detail"]
    assert client.post("/decode", params={"frames": "5:99"}, content=stream).status_code == 422


def test_decode_endpoint_returns_the_chosen_dnerv_video(serve, dnerv_library, tmp_path):
    _, library = dnerv_library
    client = serve()
    frames = decoded_result(client, {"video": "clip2", "frames": "4:10"}, library, tmp_path)
    assert len(frames) == 6 and (frames[0].width, frames[0].height) == (64, 64)
    missing = client.post("/decode", params={"video": "clip9"}, content=library)
    assert missing.status_code == 422 and "no video" in missing.json()["detail"]


def test_an_unknown_query_parameter_is_a_422_naming_it(serve, clip_with_audio):
    client = serve()
    response = client.post(
        "/preview", params={"scael": 3, "model": "tiny"}, files={"file": clip_with_audio.read_bytes()}
    )
    assert response.status_code == 422 and "'scael'" in response.json()["detail"], response.text
    assert "scale" in response.json()["detail"]  # and what the endpoint takes instead
    assert client.get("/jobs", params={"limit": 5}).status_code == 200  # known ones pass
    assert client.get("/limits", params={"verbose": 1}).status_code == 422


def test_download_names_keep_only_safe_characters(tmp_path):
    from service.api.jobview import download_name
    from service.queue import JobState
    from service.storage import JobFiles
    from worker.states import State

    files = JobFiles(tmp_path, "a" * 22)
    done = JobState(State.FINISHED, {}, result={"width": 1920, "height": 1080, "fps": 59.94})
    files.known = {"name": "../../holiday clip (1).MOV"}
    assert download_name(files, done) == "holiday_clip_1_vinr_1920x1080_59.94fps.mp4"
    files.known = {"name": ""}  # a raw-body upload: the job id stands in
    assert download_name(files, JobState(State.FINISHED, {}, result={})) == "a" * 22 + "_vinr.mp4"


def test_the_last_event_after_delete_still_carries_the_job(serve, long_clip):
    """DELETE of a running job removes its folder; the stream's last `progress` still shows the job's
    parameters and creation time, not empty defaults."""
    import json
    import threading

    client = serve()
    job = post_video(client, long_clip, {"scale": 4, "time_factor": 6, "model": "tiny"}).json()  # 720 frames
    events: list[dict] = []

    def listen() -> None:
        with client.stream("GET", f"/jobs/{job['id']}/events") as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line.removeprefix("data:")))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: any(e.get("state") == "started" for e in events), timeout=30)
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    listener.join(timeout=30)
    last = [e for e in events if "params" in e][-1]
    assert last["state"] == "canceled" and last["params"]["scale"] == 4.0 and last["created_at"] > 0, last
    assert events[-1] == {"state": "canceled"}


def test_slowmo_makes_k_times_the_frames_at_the_input_rate(serve, tmp_path):
    """``POST /upsample?slowmo=4`` on the bundled sample: 200 frames at 25 fps, 8 s, its audio slowed with it."""
    client = serve()
    sample = Path(__file__).resolve().parents[2] / "samples" / "bikes.mp4"
    params = {"slowmo": 4, "slowmo_audio": "keep", "model": "tiny"}
    job = post_video(client, sample, params).json()
    assert job["params"]["slowmo"] == 4
    body = wait_for(lambda: finished(client, job["id"]), timeout=120)
    assert body["state"] == "finished" and body["progress"]["frames_total"] == 200
    out = tmp_path / "slow.mp4"
    out.write_bytes(client.get(f"/jobs/{job['id']}/result").content)
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert video.average_rate == 25 and sum(1 for _ in container.decode(video)) == 200
        assert float(container.duration / 1e6) == pytest.approx(8.0, abs=0.05)
        assert container.streams.audio
    assert client.post("/upsample?slowmo=17", content=b"x").status_code == 422


@pytest.mark.parametrize("queue", ["embedded", "rq"])
def test_cancel_keeps_the_job_listed_as_canceled(serve, worker, long_clip, tmp_path, queue):
    """``POST /jobs/ID/cancel``: the job stops and stays listed as canceled with the progress it had, its
    files but its record deleted; a queued job says its place; ``DELETE`` then removes it."""
    if queue == "rq":
        worker()
    client = serve(redis_url=REDIS_URL) if queue == "rq" else serve()
    if queue == "rq":
        wait_for(lambda: client.get("/readyz").status_code == 200, timeout=60)
    running = post_video(client, long_clip, {"scale": 4, "time_factor": 8, "model": "tiny"}).json()
    assert running["name"] == "in.mp4"
    assert running["output"] == {"width": 256, "height": 192, "fps": 240.0, "frames": 960}
    wait_for(lambda: client.get(f"/jobs/{running['id']}").json()["progress"]["frames_done"] > 0, timeout=120)
    waiting = post_video(client, long_clip, {"scale": 1.5, "model": "tiny"}).json()
    assert waiting["state"] == "queued" and waiting["queue_position"] == 1  # next; the running one is not in line

    assert client.get(f"/jobs/{running['id']}/input").content == long_clip.read_bytes()  # the upload, as sent
    canceled = client.post(f"/jobs/{running['id']}/cancel")
    body = canceled.json()
    assert canceled.status_code == 200 and body["state"] == "canceled", body
    assert body["progress"]["frames_done"] > 0 and body["ended_at"] >= body["created_at"]
    folder = tmp_path / "data" / "jobs" / running["id"]
    assert not (folder / "input").exists() and not (folder / "result.mp4").exists()
    time.sleep(1.5)  # whatever the queue says after, the job stays canceled
    listed = {job["id"]: job for job in client.get("/jobs").json()["jobs"]}
    assert listed[running["id"]]["state"] == "canceled" and listed[running["id"]]["error"] == "canceled by request"
    assert client.get(f"/jobs/{running['id']}/result").status_code == 409
    assert client.get(f"/jobs/{running['id']}/input").status_code == 410
    assert client.post(f"/jobs/{running['id']}/cancel").json()["state"] == "canceled"  # again: nothing changes

    done = wait_for(lambda: finished(client, waiting["id"]), timeout=120)  # the worker is free for the next
    assert done["state"] == "finished" and done["ended_at"] >= done["created_at"] and done["queue_position"] is None
    assert client.post(f"/jobs/{waiting['id']}/cancel").json()["state"] == "finished"  # an ended job is left
    assert client.delete(f"/jobs/{running['id']}").status_code == 204
    assert client.get(f"/jobs/{running['id']}").status_code == 404


def test_errors_say_what_a_person_can_do_and_models_describe_themselves(serve, tmp_path):
    client = serve()
    response = client.post("/preview", params={"scale": 100}, content=b"x")
    assert response.status_code == 422
    assert response.json() == {"detail": "scale must be at most 8, got 100", "field": "scale"}
    response = client.post("/upsample", params={"slowmo_audio": "loud"}, content=b"x")
    assert response.json() == {"detail": "slowmo_audio must be 'drop' or 'keep', got 'loud'", "field": "slowmo_audio"}
    junk = client.post("/probe", content=b"not a video at all" * 100)
    assert junk.status_code == 422 and junk.json()["detail"] == (
        "cannot read the upload: it is not a video FFmpeg can open (Invalid data found when processing input); "
        "choose a video file such as MP4, MKV, MOV or WebM"
    )
    models = {model["name"]: model for model in client.get("/models").json()}
    default = models["videoinr-s48"]
    assert default["default"] and default["parameters"] > 300_000
    assert default["quality"]["4x/4x"] > 27 and default["speed"]["2x/2x"] > 0 and "EPYC" in default["speed_machine"]
    assert models["tiny"]["quality"] == {} and not models["tiny"]["default"]
