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
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, get_current_job
from rq.serializers import JSONSerializer
from rq.utils import now

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
    """SimpleWorker with a heartbeat thread and a short heartbeat TTL (see the module docstring).

    The beat is built from RQ primitives whose signatures are the same in every rq the bounds in
    pyproject.toml allow (2.6 to 3.0): ``Worker.heartbeat``, ``Execution.heartbeat`` and
    ``Job.heartbeat``; ``maintain_heartbeats`` changed its signature between them.
    """

    heartbeat_ttl = 20
    """Seconds a running job's registry entry lives without a heartbeat (``VINR_HEARTBEAT_TTL``)."""
    retry_interval = 0.5
    """Seconds between heartbeat tries while Redis does not answer (so the first beat after an outage is prompt)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_execution = None

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        """The TTL of a running job's heartbeat; rq 3 passes ``working_time``, rq 2 does not."""
        return self.heartbeat_ttl

    def prepare_execution(self, job):
        """RQ's execution record of the job about to run, kept for the heartbeat thread."""
        self.current_execution = super().prepare_execution(job)
        return self.current_execution

    def execute_job(self, job, queue) -> None:
        self.current_execution = None
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, stop), name="heartbeat", daemon=True)
        beat.start()
        try:
            super().execute_job(job, queue)
        finally:
            stop.set()
            beat.join()
            self.current_execution = None

    def beat_job(self, job, execution) -> None:
        """One heartbeat of a running job: the worker's key, the job's execution and registry entry, the job."""
        with self.connection.pipeline() as pipe:
            self.heartbeat(self.job_monitoring_interval + 60, pipeline=pipe)
            execution.heartbeat(job.started_job_registry, self.heartbeat_ttl, pipeline=pipe)
            job.heartbeat(now(), self.heartbeat_ttl, pipeline=pipe, xx=True)
            pipe.execute()

    def _beat(self, job, stop: threading.Event) -> None:
        interval = max(self.retry_interval, self.heartbeat_ttl / 4)
        wait = interval
        while not stop.wait(wait):
            execution = self.current_execution
            if execution is None:
                continue
            try:
                self.beat_job(job, execution)
                wait = interval
            except RedisError as exc:  # Redis away: keep trying often, so the job is not taken for abandoned
                log.warning("heartbeat of job %s failed: %s", job.id, exc)
                wait = self.retry_interval


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
