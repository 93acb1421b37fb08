"""Job durations as cumulative histogram counts, written where jobs end and read by /metrics.

Workers run in other processes than the gateway, so the counts live where both can reach them: in
Redis hashes for RQ (one per job kind and end state), in memory for the embedded backend. Each hash
holds one counter per bucket upper bound (a job counts in every bucket it fits, as Prometheus
histograms do), ``count`` and ``sum``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
"""Bucket upper bounds, seconds (``+Inf`` is ``count``)."""
PREFIX = "vinr:metrics:job_seconds:"
"""Redis key prefix; the key ends with ``KIND:STATE``."""


@dataclass
class Histogram:
    """Cumulative counts per bucket bound, the number of jobs and their total seconds."""

    buckets: dict[float, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    count: int = 0
    total: float = 0.0

    def add(self, seconds: float) -> None:
        for bound in BUCKETS:
            if seconds <= bound:
                self.buckets[bound] += 1
        self.count += 1
        self.total += seconds


def record(redis: Redis, kind: str, state: str, seconds: float) -> None:
    """Count one job's duration in Redis; a Redis failure is logged, never raised (it is only a metric)."""
    key = f"{PREFIX}{kind}:{state}"
    try:
        pipe = redis.pipeline(transaction=False)
        for bound in BUCKETS:
            if seconds <= bound:
                pipe.hincrby(key, repr(bound), 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.execute()
    except RedisError as exc:
        log.warning("job duration not recorded: %s", exc)


def read(redis: Redis) -> dict[tuple[str, str], Histogram]:
    """Every (kind, state) histogram recorded in Redis."""
    out = {}
    for key in redis.scan_iter(match=PREFIX + "*", count=100):
        name = key.decode() if isinstance(key, bytes) else key
        kind, _, state = name.removeprefix(PREFIX).partition(":")
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in redis.hgetall(key).items()
        }
        buckets = {bound: int(fields.get(repr(bound), 0)) for bound in BUCKETS}
        out[kind, state] = Histogram(buckets, int(fields.get("count", 0)), float(fields.get("sum", 0.0)))
    return out


class MemoryDurations:
    """The same counts for jobs run in this process (the embedded backend)."""

    def __init__(self) -> None:
        self.histograms: dict[tuple[str, str], Histogram] = {}
        self.lock = threading.Lock()

    def record(self, kind: str, state: str, seconds: float) -> None:
        with self.lock:
            self.histograms.setdefault((kind, state), Histogram()).add(seconds)

    def read(self) -> dict[tuple[str, str], Histogram]:
        with self.lock:
            return {key: Histogram(dict(h.buckets), h.count, h.total) for key, h in self.histograms.items()}
