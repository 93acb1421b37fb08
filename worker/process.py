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
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq import Queue, SimpleWorker, get_current_job
from rq.serializers import JSONSerializer
from rq.utils import now

from models.registry import DEFAULT_MODEL
from models.scheduling import leave_realtime
from worker import durations
from worker.errors import CanceledError
from worker.jobs import JobContext, run_job
from worker.runtime import ModelCache
from worker.settings import WorkerSettings, cancel_key
from worker.states import State

if TYPE_CHECKING:
    from rq.executions import Execution

log = logging.getLogger(__name__)

CANCEL_CHECK_INTERVAL = 0.5
"""Seconds between looks at the cancellation flag."""
RETRY_CAP = 1.0
"""Longest pause, seconds, between a worker's tries of a Redis command while Redis is away."""


@functools.lru_cache(maxsize=1)
def process_models() -> ModelCache:
    """This process's model cache (one per worker process, kept between jobs)."""
    settings = WorkerSettings()
    return ModelCache.for_settings(settings)


def rq_context() -> JobContext:
    """Progress into ``job.meta['progress']``; stop when the job's cancellation flag appears."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("rq_context: called outside an RQ job")
    last_check, stopped = [0.0], [False]

    def report(progress: dict) -> None:
        job.meta["progress"] = progress
        try:
            job.save_meta()
        except RedisError as exc:  # Redis away: the job goes on; the next report brings progress up to date
            log.warning("progress of job %s not saved: %s", job.id, exc)

    def should_stop() -> bool:
        now = time.monotonic()
        if not stopped[0] and now - last_check[0] >= CANCEL_CHECK_INTERVAL:
            last_check[0] = now
            try:
                stopped[0] = bool(job.connection.exists(cancel_key(job.id)))
            except RedisError as exc:  # unknown while Redis is away: keep working, look again later
                log.warning("cancellation flag of job %s not read: %s", job.id, exc)
        return stopped[0]

    settings = WorkerSettings()
    return JobContext(
        report,
        should_stop,
        process_models(),
        settings.device,
        settings.backend,
        settings.bf16,
        settings.encoder,
        settings.max_adapt_seconds,
    )


def run_timed(kind: str, job_dir: str, params: dict) -> dict:
    """Run a job with this worker's context, and count its duration by how it ended (for /metrics)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_timed: called outside an RQ job")
    started, state = time.monotonic(), State.FAILED
    try:
        result = run_job(kind, job_dir, params, rq_context())
        state = State.FINISHED
        return result
    except CanceledError:
        state = State.CANCELED
        raise
    finally:
        durations.record(job.connection, kind, state.value, time.monotonic() - started)


def rq_decode(job_dir: str, params: dict) -> dict:
    """The RQ entry point of ``decode_job``."""
    return run_timed("decode", job_dir, params)


def rq_segment(job_dir: str, params: dict) -> dict:
    """The RQ entry point of one segment of a segmented upsample."""
    return run_timed("segment", job_dir, params)


def rq_decode_segment(job_dir: str, params: dict) -> dict:
    """The RQ entry point of one segment of a segmented decode."""
    return run_timed("decode_segment", job_dir, params)


def rq_adapt(job_dir: str, params: dict) -> dict:
    """The RQ entry point of a segmented upsample's adaptation (runs before its segments)."""
    return run_timed("adapt", job_dir, params)


def rq_assemble(job_dir: str, params: dict) -> dict:
    """The RQ entry point of a segmented upsample's join (runs once every segment is done)."""
    return run_timed("assemble", job_dir, params)


def rq_upsample(job_dir: str, params: dict) -> dict:
    """The RQ entry point: progress in ``job.meta``, cancellation by a Redis flag."""
    return run_timed("upsample", job_dir, params)


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current_execution: Execution | None = None
        self.stop_signalled = False

    def request_stop(self, signum, frame) -> None:
        """SIGTERM/SIGINT: a warm shutdown (RQ's), remembered here. An idle rq 3 worker raises StopRequested
        without setting its own flag, so ``run_worker`` would otherwise start working again."""
        self.stop_signalled = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # rq leaves it unannotated

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        """The TTL of a running job's registry entry; rq 3 passes ``working_time``, rq 2 does not.

        RQ scores entries in whole seconds (``floor(now) + ttl``) and takes ``score <= floor(now)`` as
        expired, so an entry of TTL ``t`` may lapse ``t - 1`` seconds after a beat: one second more
        keeps at least ``heartbeat_ttl`` seconds of tolerance (a dead worker is found within TTL + 1 s).
        """
        return self.heartbeat_ttl + 1

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
            ttl = self.get_heartbeat_ttl(job)
            execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
            pipe.execute()

    def _beat(self, job, stop: threading.Event) -> None:
        interval = max(self.retry_interval, self.heartbeat_ttl / 4)
        wait, last = interval, time.monotonic()
        while not stop.wait(wait):
            execution = self.current_execution
            if execution is None:
                continue
            self.warn_if_late(job, last, "beat again")
            try:
                self.beat_job(job, execution)
                self.ensure_registered()
                wait, last = interval, time.monotonic()
            except RedisError as exc:  # Redis away: keep trying often, so the job is not taken for abandoned
                log.warning("heartbeat of job %s failed: %s", job.id, exc)
                wait = self.retry_interval
        self.warn_if_late(job, last, "ended")

    def warn_if_late(self, job, last: float, what: str) -> None:
        """Log when a job's beats were so far apart (a starved process) that it nearly counted as abandoned."""
        gap = time.monotonic() - last
        if gap > 0.75 * self.heartbeat_ttl:
            log.warning("job %s %s %.1f s after its last heartbeat (TTL %s s)", job.id, what, gap, self.heartbeat_ttl)

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        """RQ's worker heartbeat, then (outside a pipeline) re-registration if Redis lost the worker."""
        super().heartbeat(timeout, pipeline=pipeline)
        if pipeline is None:
            self.ensure_registered()

    def ensure_registered(self) -> None:
        """Register again when Redis lost this worker (restarted without persistence): readiness counts it."""
        if self.connection.sismember(self.redis_workers_keys, self.key) and self.connection.hexists(self.key, "birth"):
            return
        log.warning("worker %s: Redis forgot this worker; registering again", self.name)
        self.connection.delete(self.key)
        self.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated


def redis_connection(url: str, wait: float = 0.0) -> Redis:
    """A Redis client that fails fast when Redis is away (the gateway answers 503 at once).

    With ``wait`` (workers), every command instead retries a lost connection for about that many
    seconds, so everything RQ writes while a job runs or ends (heartbeats, progress, the job's end)
    waits for Redis to come back instead of failing: a job that ends during an outage is recorded
    afterwards and never runs twice.
    """
    options: dict[str, Any] = {"socket_connect_timeout": 5, "health_check_interval": 30}
    if wait > 0:
        options["retry"] = Retry(ExponentialBackoff(cap=RETRY_CAP, base=0.05), retries=math.ceil(wait / RETRY_CAP))
        options["retry_on_error"] = [RedisConnectionError, RedisTimeoutError]
    return Redis.from_url(url, **options)


def wait_for_redis(connection: Redis) -> None:
    """Block until Redis answers a PING."""
    delay = 0.5
    while True:
        try:
            connection.ping()
            return
        except RedisError as exc:
            log.warning("redis unreachable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def run_worker(settings: WorkerSettings, queues: list[str] | None = None, burst: bool = False) -> bool:
    """Load the default model once, then work the queues (until SIGTERM, or empty with ``burst``)."""
    if not settings.redis_url:
        raise SystemExit("vinr worker: VINR_REDIS_URL is not set (embedded mode needs no worker)")
    if leave_realtime():  # a real-time parent (e.g. one that had encoded AV1 as root)
        log.warning("vinr worker: left an inherited real-time scheduling policy for the normal one")
    if settings.nice > 0:
        os.nice(settings.nice)  # batch work yields the CPU to the gateway (requests, previews) on a shared machine
    try:  # the ONNX backend exports (or checks its cached export) here, before the first job
        process_models().upsampler(DEFAULT_MODEL, settings.device, settings.backend, bf16=settings.bf16)
    except Exception as exc:  # the worker still serves other models
        log.warning("could not preload %s: %s", DEFAULT_MODEL, exc)
    connection = redis_connection(settings.redis_url, wait=settings.redis_wait)
    names = queues or [settings.queue]
    worked = False
    while True:
        wait_for_redis(connection)
        worker = VinrWorker(
            [Queue(n, connection=connection, serializer=JSONSerializer) for n in names],
            connection=connection,
            serializer=JSONSerializer,
            # an idle worker wakes every heartbeat TTL (dequeue timeout = worker_ttl - 15) to beat and, if
            # Redis lost its data, register again; a dead idle worker leaves /readyz within worker_ttl + 60 s
            worker_ttl=settings.heartbeat_ttl + 15,
        )
        worker.heartbeat_ttl = settings.heartbeat_ttl
        # registry cleanup (abandoned jobs) is the gateway's: a worker that has just reconnected after an
        # outage must not take jobs whose workers have not beaten again yet for abandoned
        worker.last_cleaned_at = now()  # type: ignore[assignment]  # rq declares it None-only
        try:
            worked = worker.work(burst=burst, logging_level="WARNING") or worked
        except RedisError as exc:  # the work loop ended on a Redis error (teardown included)
            log.warning("worker %s: redis error (%s); reconnecting", worker.name, exc)
        if burst or worker.stop_signalled or worker._stop_requested:  # SIGTERM/SIGINT: a warm shutdown
            return worked
        log.warning("worker %s stopped working without a stop request; starting again", worker.name)
        time.sleep(1.0)
