"""``vinr worker``: an RQ worker that keeps its models loaded and heartbeats while a job runs.

RQ's default worker forks a work horse per job, which would reload the models every time (and
must not fork after CUDA is initialised). ``VinrWorker`` runs jobs in its own process, like RQ's
SimpleWorker, with a heartbeat thread: a SIGKILLed worker's job is seen as abandoned within
``VINR_HEARTBEAT_TTL`` seconds (then retried or failed by the started-job registry's cleanup), instead
of staying "started" until its timeout.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from redis import Redis
from rq import Queue, SimpleWorker, get_current_job
from rq.serializers import JSONSerializer

from service.settings import Settings
from worker.jobs import JobContext
from worker.runtime import ModelCache, choose_device, choose_dtype

log = logging.getLogger(__name__)

CANCEL_TTL = 24 * 3600
"""Seconds a cancellation flag is kept in Redis."""
CANCEL_CHECK_INTERVAL = 0.5
"""Seconds between looks at the cancellation flag."""


def cancel_key(job_id: str) -> str:
    """Redis key whose presence tells a running job to stop."""
    return f"vinr:cancel:{job_id}"


@functools.lru_cache(maxsize=1)
def process_models() -> ModelCache:
    """This process's model cache (one per worker process, kept between jobs)."""
    settings = Settings()
    return ModelCache((settings.models_dir,) if settings.models_dir else ())


def rq_context() -> JobContext:
    """Progress into ``job.meta['progress']``; stop when the job's cancellation flag appears."""
    job = get_current_job()
    last_check, stopped = [0.0], [False]

    def report(progress: dict) -> None:
        job.meta["progress"] = progress
        job.save_meta()

    def should_stop() -> bool:
        now = time.monotonic()
        if not stopped[0] and now - last_check[0] >= CANCEL_CHECK_INTERVAL:
            last_check[0] = now
            stopped[0] = bool(job.connection.exists(cancel_key(job.id)))
        return stopped[0]

    return JobContext(report, should_stop, process_models(), Settings().device)


class VinrWorker(SimpleWorker):
    """SimpleWorker with a heartbeat thread and a short heartbeat TTL (see the module docstring)."""

    heartbeat_ttl = 20
    """Seconds a running job's registry entry lives without a heartbeat (``VINR_HEARTBEAT_TTL``)."""

    def get_heartbeat_ttl(self, job) -> int:
        return self.heartbeat_ttl

    def execute_job(self, job, queue) -> None:
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        finally:
            stop.set()
            beat.join()

    def _beat(self, job, stop: threading.Event) -> None:
        while not stop.wait(max(1.0, self.heartbeat_ttl / 4)):
            try:
                if self.execution is not None:
                    self.maintain_heartbeats(job)
            except Exception:  # a missed beat is not fatal; the next one may pass
                log.exception("heartbeat failed")


def run_worker(settings: Settings, queues: list[str] | None = None, burst: bool = False) -> bool:
    """Load the default model once, then work the queues (until SIGTERM, or empty with ``burst``)."""
    if not settings.redis_url:
        raise SystemExit("vinr worker: VINR_REDIS_URL is not set (embedded mode needs no worker)")
    device = choose_device(settings.device)
    try:
        process_models().get("videoinr-s", device, choose_dtype(device, False))
    except Exception as exc:  # the worker still serves other models
        log.warning("could not preload videoinr-s: %s", exc)
    connection = Redis.from_url(settings.redis_url)
    names = queues or [settings.queue]
    worker = VinrWorker(
        [Queue(n, connection=connection, serializer=JSONSerializer) for n in names],
        connection=connection,
        serializer=JSONSerializer,
    )
    worker.heartbeat_ttl = settings.heartbeat_ttl
    return worker.work(burst=burst, logging_level="WARNING")
