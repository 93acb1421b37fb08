"""Enqueue, inspect and cancel jobs: over RQ (``VINR_REDIS_URL``) or in-process (embedded mode).

Both backends run the same job functions (``worker.jobs``) and describe jobs with ``JobState``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

from redis.asyncio import ConnectionPool as AsyncConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, RedisError
from rq import Queue, worker_registration
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp, now, utcparse

from models.probe import check_bitstream
from service.settings import Settings
from worker import durations
from worker.durations import MemoryDurations
from worker.errors import CanceledError
from worker.folders import JobFolder
from worker.jobs import JOB_FUNCTIONS, JobContext, eta_seconds, run_job, upsample_request
from worker.process import redis_connection
from worker.runtime import ModelCache
from worker.segments import SegmentPlan, make_plan, plan_frame_segments
from worker.settings import CANCEL_TTL, cancel_key
from worker.states import CANCELED_BY_REQUEST, State

SEGMENT_IDS = "segments"
"""The key of a segmented job's ``job.meta`` that lists its segment jobs' ids."""
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
"""RQ statuses of a job that has not started: canceling one takes it out of the queue."""
WORKER_BEAT_SLACK = 5
"""Seconds a worker's heartbeat may be late, past two heartbeat TTLs (an idle worker beats every TTL), before
readiness and ``vinr_workers`` stop counting it."""
STATUS_CONNECTIONS = 1024
"""Most Redis connections a gateway's status reads open at once (one per read in flight; Redis takes 10,000)."""
RECOVERY_LOCK = "vinr:lock:recover"
"""Redis lock held while abandoned jobs are requeued (one gateway thread at a time)."""


def segment_job_id(job_id: str, index: int) -> str:
    """The RQ id of a segmented job's segment ``index``."""
    return f"{job_id}-s{index:04d}"


def adapt_job_id(job_id: str) -> str:
    """The RQ id of a segmented job's adaptation."""
    return f"{job_id}-adapt"


def split(kind: str, job_dir: str, params: dict, seconds: float) -> SegmentPlan | None:
    """The segment plan of an upsample's input or a decode's frame range (saved in the job folder), or
    None when it is one segment."""
    folder = Path(job_dir)
    if kind == "decode":
        probe = check_bitstream(JobFolder(folder).input, params.get("video"), params.get("frames"))
        segments = plan_frame_segments(probe.start, probe.stop, probe.fps, seconds)
        segments = dataclasses.replace(segments, origin=probe.start)
    else:
        _, segments = make_plan(JobFolder(folder).input, upsample_request(params, "cpu"), length=seconds)
    if len(segments.segments) < 2:
        return None
    segments.save(folder)
    return segments


def abandoned_key(job_id: str) -> str:
    """Redis counter of the times a job was found abandoned (not in job.meta: workers rewrite the meta)."""
    return f"vinr:abandoned:{job_id}"


@dataclass
class JobState:
    """What the gateway knows of a job."""

    state: State
    progress: dict = field(default_factory=dict)
    error: str | None = None
    result: dict | None = None
    ended_at: float | None = None
    """When it finished or failed (Unix time), where the backend says."""
    queue_position: int | None = None
    """A queued job's place, 1 = next."""

    @property
    def done(self) -> bool:
        return self.state.done


def unix_time(value) -> float | None:
    """RQ's time (a datetime, or its ISO text in a job's hash) as Unix time; None for none."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = utcparse(value) if value else None
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def error_line(exc_string: str | None) -> str:
    """The last line of a traceback, without the exception's module path."""
    if not exc_string:
        return "the job failed"
    line = exc_string.strip().splitlines()[-1]
    if "AbandonedJobError" in line:
        return "the worker running this job died (no retries left)"
    kind, _, message = line.partition(": ")
    return message or kind


class RQBackend:
    """Jobs on a Redis queue, run by ``vinr worker`` processes anywhere."""

    lost = "the job's record is gone from Redis (expired, or Redis lost its data)"
    """The error of a job whose folder exists but whose record does not."""

    def __init__(self, settings: Settings):
        if not settings.redis_url:
            raise ValueError("RQBackend: VINR_REDIS_URL is not set")
        self.settings = settings
        self.redis = redis_connection(settings.redis_url)
        # status reads; a connection Redis closed (a restart) is replaced once, at once, before it counts as away
        pool = AsyncConnectionPool.from_url(
            settings.redis_url,
            max_connections=STATUS_CONNECTIONS,
            socket_connect_timeout=5,
            retry=AsyncRetry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self.aredis = AsyncRedis(connection_pool=pool)
        self.queue = Queue(settings.queue, connection=self.redis, serializer=JSONSerializer)
        self.outage_seen = float("-inf")  # time.monotonic() of the last Redis error seen
        self.turn = 0  # calls of recover_in_turn

    def outage_grace(self) -> bool:
        """True until Redis has answered for two heartbeat TTLs after an error: workers beat again first."""
        return time.monotonic() - self.outage_seen < 2 * self.settings.heartbeat_ttl

    def enqueue(self, job_id: str, kind: str, job_dir: str, params: dict) -> None:
        """Queue a job; an upsample longer than VINR_SEGMENT_SECONDS becomes segments plus a join."""
        if kind in ("upsample", "decode") and self.settings.segment_seconds > 0:
            segments = split(kind, job_dir, params, self.settings.segment_seconds)
            if segments is not None:
                self.enqueue_segmented(kind, job_id, job_dir, params, segments)
                return
        self.put(kind, job_id, job_dir, params)

    def put(self, kind: str, job_id: str, job_dir: str, params: dict, **extra) -> None:
        s = self.settings
        # no RQ Retry: a job that fails on its input would fail again; only a dead worker's job is retried
        self.queue.enqueue(
            JOB_FUNCTIONS[kind],
            args=(job_dir, params),
            job_id=job_id,
            job_timeout=s.job_timeout,
            result_ttl=s.result_ttl,
            failure_ttl=s.failure_ttl,
            description=kind,
            **extra,
        )

    def enqueue_segmented(self, kind: str, job_id: str, job_dir: str, params: dict, segments: SegmentPlan) -> None:
        """One RQ job per segment (any worker takes any), then the join under the job's own id once all are done."""
        children = [segment_job_id(job_id, s.index) for s in segments.segments]
        child_kind = "decode_segment" if kind == "decode" else "segment"
        first: dict = {}
        if kind == "upsample" and params.get("adapt"):  # one adaptation, before every segment (they share it)
            adapting = adapt_job_id(job_id)
            self.put("adapt", adapting, job_dir, params, meta={"parent": job_id})
            first, children = {"depends_on": [adapting]}, [adapting, *children]
        for segment, child in zip(segments.segments, children[-len(segments.segments) :]):
            child_params = {**params, "segment": segment.index, "origin": segments.origin}
            self.put(child_kind, child, job_dir, child_params, meta={"parent": job_id}, **first)
        meta = {SEGMENT_IDS: children, "frames_total": segments.frames}
        self.put("assemble", job_id, job_dir, params, depends_on=children, meta=meta)

    def recover(self, scan_failed: bool = False) -> None:
        """Abandoned jobs (their worker stopped heartbeating) back to the queue, ``retries`` times, else failed.

        Cheap by default (only jobs that have just expired); ``scan_failed`` also looks through the
        failed registry, for jobs a worker's own maintenance moved there first.
        """
        try:
            if self.outage_grace():
                self.redis.ping()  # still away? then the grace runs on from now
                return
            # one recovery at a time, across threads and gateways: each abandoned job is requeued once
            with self.redis.lock(RECOVERY_LOCK, timeout=60, blocking_timeout=0):
                self._recover(scan_failed)
        except LockError:  # another thread or gateway is recovering right now
            return
        except RedisError:
            self.outage_seen = time.monotonic()
            raise

    def recover_in_turn(self) -> None:
        """What the gateway runs every quarter heartbeat TTL: the cheap check, and the full scan every fourth time.

        Run that often, it also notices every Redis outage long enough to expire a heartbeat (3/4 TTL).
        """
        self.turn += 1
        self.recover(scan_failed=self.turn % 4 == 1)

    def _recover(self, scan_failed: bool) -> None:
        started, failed = StartedJobRegistry(queue=self.queue), self.queue.failed_job_registry
        now = current_timestamp()  # one cut-off for both: a job expiring between two clocks would be failed unseen
        candidates = started.get_expired_job_ids(now)
        started.cleanup(now)
        if scan_failed:
            candidates = failed.get_job_ids()
        for job_id in candidates:
            try:
                job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            result = job.latest_result()
            abandoned = result is not None and "AbandonedJobError" in (result.exc_string or "")
            if not (abandoned and job.is_failed):
                continue
            times = self.redis.incr(abandoned_key(job_id))
            self.redis.expire(abandoned_key(job_id), CANCEL_TTL)
            if times <= self.settings.retries:
                failed.requeue(job_id)
            elif job.args:  # failed for good: the dead worker's partial result goes
                JobFolder(Path(job.args[0])).result.unlink(missing_ok=True)

    def state(self, job_id: str) -> JobState | None:
        self.recover()
        try:
            job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return None
        status = job.get_status(refresh=True)
        state = {
            JobStatus.QUEUED: State.QUEUED,
            JobStatus.DEFERRED: State.QUEUED,
            JobStatus.SCHEDULED: State.QUEUED,
            JobStatus.STARTED: State.STARTED,
            JobStatus.FINISHED: State.FINISHED,
            JobStatus.FAILED: State.FAILED,
            JobStatus.STOPPED: State.CANCELED,
            JobStatus.CANCELED: State.CANCELED,
        }.get(status, State.QUEUED)
        meta = job.get_meta(refresh=False)
        progress = meta.get("progress", {})
        if self.redis.exists(cancel_key(job_id)):
            return JobState(State.CANCELED, progress, CANCELED_BY_REQUEST)
        if meta.get("error"):  # a segment failed: the job failed with its reason
            return JobState(State.FAILED, progress, meta["error"])
        if meta.get(SEGMENT_IDS) and state is State.QUEUED:  # the join waits: the segments tell how far it is
            return self.segments_state(job)
        if meta.get(SEGMENT_IDS) and state is State.STARTED:  # joining: every frame is made
            total = meta.get("frames_total", 0)
            progress = {"frames_done": total, "frames_total": total}
        if state is State.FAILED:
            result = job.latest_result()
            exc_string = result.exc_string if result else job.exc_info
            if self.will_retry(job_id, exc_string):  # its worker died: the next full ``recover`` requeues it
                return JobState(State.QUEUED, progress)
            return JobState(state, progress, error_line(exc_string), ended_at=unix_time(job.ended_at))
        if state is State.QUEUED:
            return JobState(state, progress, queue_position=self.position(job_id))
        return JobState(
            state,
            progress,
            result=job.return_value() if state is State.FINISHED else None,
            ended_at=unix_time(job.ended_at) if state is State.FINISHED else None,
        )

    def position(self, job_id: str) -> int | None:
        """A queued job's place in its queue, 1 = next (None where it is not in the list: deferred)."""
        index = self.queue.get_job_position(job_id)
        return index + 1 if index is not None else None

    async def quick_state(self, job_id: str) -> JobState | None:
        """A status read in one Redis command, on the event loop: the job's status and meta. None where
        ``state`` must look further (failed, segmented, canceled, gone). A canceled job's folder is deleted
        with it, so its reads end in a 404 before they get here."""
        status, raw, ended = await self.aredis.hmget(Job.key_for(job_id), "status", "meta", "ended_at")
        state = QUICK_STATES.get(status) if isinstance(status, bytes) else None
        if state is None:
            return None
        meta = json.loads(raw) if raw else {}
        if meta.get(SEGMENT_IDS) or meta.get("error"):
            return None
        position = None
        if state is State.QUEUED:
            index = await self.aredis.lpos(self.queue.key, job_id)
            position = index + 1 if isinstance(index, int) else None
        ended_at = unix_time(ended) if state is State.FINISHED else None
        return JobState(state, meta.get("progress", {}), ended_at=ended_at, queue_position=position)

    def segments_state(self, job: Job) -> JobState:
        """A segmented job before its join: started once a segment has, progress summed over the segments;
        failed (and the rest stopped) as soon as one fails for good."""
        total = job.meta.get("frames_total", 0)
        done, fps, begun = 0, 0.0, False
        stage: dict = {}
        for child in Job.fetch_many(job.meta[SEGMENT_IDS], connection=self.redis, serializer=JSONSerializer):
            if child is None:
                continue
            status = child.get_status(refresh=False)
            progress = child.meta.get("progress", {})
            if status == JobStatus.FAILED:
                result = child.latest_result()
                if self.will_retry(child.id, result.exc_string if result else None):
                    continue  # its worker died: ``recover`` puts it back in the queue
                error = error_line(result.exc_string if result else child.exc_info)
                job.meta["error"] = error
                job.save_meta()
                self.cancel_segments(job)
                return JobState(State.FAILED, {"frames_done": done, "frames_total": total}, error)
            if child.id == adapt_job_id(job.id):  # the adaptation: its stage and summary, no frames
                if status in (JobStatus.STARTED, JobStatus.FINISHED):
                    begun = True
                    stage = {"stage": "adapting" if status == JobStatus.STARTED else "rendering"}
                    stage |= {"adapt": progress["adapt"]} if "adapt" in progress else {}
                continue
            if status in (JobStatus.STARTED, JobStatus.FINISHED):
                begun = True
                done += progress.get("frames_done", 0)
                fps += (progress.get("fps") or 0.0) if status == JobStatus.STARTED else 0.0
        eta = round(eta, 1) if (eta := eta_seconds(done, total, fps)) is not None else None
        progress = {"frames_done": done, "frames_total": total, "fps": round(fps, 3) or None, "eta_s": eta, **stage}
        return JobState(State.STARTED if begun else State.QUEUED, progress)

    def will_retry(self, job_id: str, exc_string: str | None) -> bool:
        """Whether a failed job was abandoned by a dead worker and has retries left (``recover`` requeues it)."""
        if "AbandonedJobError" not in (exc_string or ""):
            return False
        return int(self.redis.get(abandoned_key(job_id)) or 0) <= self.settings.retries  # counted before requeue

    def cancel_segments(self, job: Job) -> None:
        """Stop a segmented job's segments: running ones at their next frame, queued ones before they start."""
        for child_id in job.meta.get(SEGMENT_IDS, []):
            self.redis.set(cancel_key(child_id), 1, ex=CANCEL_TTL)
            try:
                child = Job.fetch(child_id, connection=self.redis, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            if child.get_status() in WAITING:
                child.cancel()
        if job.get_status() in WAITING:
            job.cancel()

    def cancel(self, job_id: str) -> None:
        self.redis.set(cancel_key(job_id), 1, ex=CANCEL_TTL)
        try:
            job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
        except NoSuchJobError:
            return
        if job.meta.get(SEGMENT_IDS):
            self.cancel_segments(job)
        elif job.get_status() in WAITING:
            job.cancel()

    def ready(self) -> tuple[bool, str]:
        try:
            self.redis.ping()
        except RedisError as exc:
            return False, f"redis unreachable: {exc}"
        workers = self.live_workers()
        return workers > 0, f"{workers} worker(s) on queue {self.queue.name!r}"

    def live_workers(self) -> int:
        """Workers on this queue whose last heartbeat is fresh. A worker that died keeps its entry in RQ's
        worker set, and its key for another ``worker_ttl`` + 60 s, so neither is a sign of life."""
        keys = sorted(worker_registration.get_keys(queue=self.queue))
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, "last_heartbeat")
            beats = pipe.execute()
        fresh = 2 * self.settings.heartbeat_ttl + WORKER_BEAT_SLACK
        moment = now()
        return sum(1 for beat in beats if beat and (moment - utcparse(beat.decode())).total_seconds() <= fresh)

    def metrics(self) -> dict:
        started = StartedJobRegistry(queue=self.queue)
        fps = 0.0
        for job_id in started.get_job_ids():
            try:
                job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
                fps += job.meta.get("progress", {}).get("fps") or 0.0
            except NoSuchJobError:
                continue
        return {
            State.QUEUED.value: self.queue.count,
            State.STARTED.value: started.count,
            State.FINISHED.value: self.queue.finished_job_registry.count,
            State.FAILED.value: self.queue.failed_job_registry.count,
            State.CANCELED.value: self.queue.canceled_job_registry.count,
            "fps": fps,
            "workers": self.live_workers(),
            "durations": durations.read(self.redis),
        }


QUICK_STATES = {
    **{status.value.encode(): State.QUEUED for status in WAITING},
    JobStatus.STARTED.value.encode(): State.STARTED,
    JobStatus.FINISHED.value.encode(): State.FINISHED,
}
"""RQ statuses a status read takes as they are (``RQBackend.quick_state``); the others go the long way."""


class EmbeddedBackend:
    """Jobs run one at a time by a thread of the gateway process; state kept in memory."""

    lost = "the job's record was lost (the gateway restarted in embedded mode)"
    """The error of a job whose folder exists but whose record does not."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.models = ModelCache.for_settings(settings)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vinr-job")
        self.jobs: dict[str, JobState] = {}
        self.stops: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.durations = MemoryDurations()

    def enqueue(self, job_id: str, kind: str, job_dir: str, params: dict) -> None:
        if kind == "upsample" and self.settings.segment_seconds > 0:  # the segments, one after another
            params = {**params, "segment_seconds": self.settings.segment_seconds}
        with self.lock:
            self.jobs[job_id] = JobState(State.QUEUED)
            self.stops[job_id] = threading.Event()
        self.pool.submit(self._run, job_id, kind, job_dir, params)

    def _run(self, job_id: str, kind: str, job_dir: str, params: dict) -> None:
        job, stop = self.jobs[job_id], self.stops[job_id]
        if stop.is_set():
            return
        job.state = State.STARTED

        def report(progress: dict) -> None:
            job.progress = progress

        context = JobContext(
            report,
            stop.is_set,
            self.models,
            self.settings.device,
            self.settings.backend,
            self.settings.bf16,
            self.settings.encoder,
            self.settings.max_adapt_seconds,
        )
        started = time.monotonic()
        try:
            job.result = run_job(kind, job_dir, params, context)
            job.state = State.FINISHED
        except CanceledError:
            job.state, job.error = State.CANCELED, CANCELED_BY_REQUEST
        except Exception as exc:  # reported to the client, like RQ's failed registry
            if stop.is_set():  # canceled, then tripped on its deleted files before it saw the flag
                job.state, job.error = State.CANCELED, CANCELED_BY_REQUEST
            else:
                job.state, job.error = State.FAILED, str(exc) or type(exc).__name__
        job.ended_at = time.time()
        self.durations.record(kind, job.state.value, time.monotonic() - started)

    def state(self, job_id: str) -> JobState | None:
        return self.jobs.get(job_id)

    async def quick_state(self, job_id: str) -> JobState | None:
        """The job's state from memory, unless it failed or is unknown (then its folder is read)."""
        state = self.jobs.get(job_id)
        if state is None or state.state is State.FAILED:
            return None
        if state.state is State.QUEUED:  # jobs run one at a time, in the order they came
            ahead = [j for j in list(self.jobs.values()) if j.state is State.QUEUED]
            place = next((i for i, j in enumerate(ahead) if j is state), None)
            return dataclasses.replace(state, queue_position=place + 1 if place is not None else None)
        return state

    def cancel(self, job_id: str) -> None:
        with self.lock:
            if job_id in self.stops:
                self.stops[job_id].set()
            job = self.jobs.get(job_id)
            if job is not None and job.state is State.QUEUED:
                job.state, job.error, job.ended_at = State.CANCELED, CANCELED_BY_REQUEST, time.time()

    def ready(self) -> tuple[bool, str]:
        return True, "embedded worker"

    def metrics(self) -> dict:
        counts = {s.value: 0 for s in State}
        fps = 0.0
        for job in list(self.jobs.values()):
            counts[job.state.value] += 1
            fps += job.progress.get("fps") or 0.0 if job.state is State.STARTED else 0.0
        return {**counts, "fps": fps, "workers": 1, "durations": self.durations.read()}

    def close(self) -> None:
        for stop in self.stops.values():
            stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_backend(settings: Settings) -> RQBackend | EmbeddedBackend:
    """RQ when ``VINR_REDIS_URL`` is set, else embedded."""
    return RQBackend(settings) if settings.redis_url else EmbeddedBackend(settings)
