"""Job folders expire: the gateway's sweep deletes old folders of ended or forgotten jobs, never a live one."""

from __future__ import annotations

import time

from service.main import create_app, sweep
from service.queue import JobState
from service.settings import Settings
from service.storage import JobFiles, new_job_id
from worker.states import State


def make_job(settings: Settings, age_s: float, state: State | None, backend) -> JobFiles:
    files = JobFiles(settings.data_dir, new_job_id())
    files.create({"kind": "upsample", "params": {}})
    files.write_meta({**files.meta(), "created_at": time.time() - age_s})
    files.input.write_bytes(b"uploaded")
    files.uploaded()
    if state is not None:
        backend.jobs[files.id] = JobState(state)
    return files


def test_the_sweep_deletes_expired_ended_or_forgotten_jobs_only(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", result_ttl=3600, failure_ttl=600)
    app = create_app(settings)  # embedded backend: job states in memory
    backend = app.state.backend
    try:
        expired = {s: make_job(settings, 7200, s, backend) for s in (State.FINISHED, State.FAILED, State.CANCELED)}
        forgotten = make_job(settings, 7200, None, backend)  # a folder whose record is gone (restart)
        running = make_job(settings, 7200, State.STARTED, backend)  # long job: kept whatever its age
        young = make_job(settings, 60, State.FINISHED, backend)  # within the result TTL
        sweep(app)
        assert not any(files.dir.exists() for files in (*expired.values(), forgotten))
        assert running.dir.exists() and young.dir.exists()
        assert running.input.read_bytes() == b"uploaded"
    finally:
        backend.close()


def test_the_sweep_removes_joined_segments_nobody_streams(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    backend = app.state.backend
    try:
        jobs = {state: make_job(settings, 60, state, backend) for state in (State.FINISHED, State.STARTED)}
        streamed = make_job(settings, 60, State.FINISHED, backend)
        for files in (*jobs.values(), streamed):
            (files.dir / "segments").mkdir()
            (files.dir / "segments" / "0000.mp4").write_bytes(b"segment")
        (streamed.dir / ".live-x.mp4").write_bytes(b"a client is reading the segments")
        sweep(app)
        assert not (jobs[State.FINISHED].dir / "segments").exists()  # joined: the segments go
        assert (jobs[State.STARTED].dir / "segments" / "0000.mp4").exists()  # still being made
        assert (streamed.dir / "segments" / "0000.mp4").exists()  # a live join still reads them
        assert jobs[State.FINISHED].input.exists()
    finally:
        backend.close()
