"""Prometheus metrics of the gateway (prometheus-client): jobs, queue, workers, job durations, requests.

Job and worker numbers are read from the queue backend at each scrape (a custom collector), so every
gateway replica reports the same; request latency is this process's own histogram. Each app has its
own registry (tests build several apps in one process).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.states import State

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds until a response's headers are sent (uploads are read before; results stream after)."""


class BackendCollector:
    """The queue backend's numbers as metric families, read when Prometheus scrapes."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def collect(self):
        m = self.backend.metrics()
        jobs = GaugeMetricFamily("vinr_jobs", "Jobs by state.", labels=["state"])
        for state in State:
            jobs.add_metric([state.value], m[state.value])
        yield jobs
        yield GaugeMetricFamily("vinr_queue_depth", "Jobs waiting for a worker.", value=m[State.QUEUED.value])
        yield GaugeMetricFamily(
            "vinr_output_frames_per_second", "Output frames per second being made, all jobs.", value=m["fps"]
        )
        yield GaugeMetricFamily("vinr_workers", "Live workers.", value=m["workers"])
        seconds = HistogramMetricFamily(
            "vinr_job_duration_seconds",
            "Wall time of jobs that ended, by kind and end state.",
            labels=["kind", "state"],
        )
        for (kind, state), histogram in sorted(m["durations"].items()):
            buckets = [(repr(bound), count) for bound, count in histogram.buckets.items()]
            seconds.add_metric([kind, state], [*buckets, ("+Inf", histogram.count)], histogram.total)
        yield seconds


class Metrics:
    """One app's registry: the backend collector and the request latency histogram."""

    def __init__(self, backend: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BackendCollector(backend))
        self.latency = Histogram(
            "vinr_http_request_duration_seconds",
            "Seconds from a request's arrival to its response headers, by method, route and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LatencyMiddleware:
    """Observe each HTTP request's time to response headers, labelled by its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                labels = (scope["method"], route, str(message["status"]))
                self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed_send)
