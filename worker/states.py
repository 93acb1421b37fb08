"""A job's states: one enum, one spelling, for the workers, the schemas, both queue backends, the routes and
/metrics."""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """Where a job is; the value is what the API and /metrics say."""

    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value

    @property
    def done(self) -> bool:
        """Whether the job has ended (its result file is complete or gone)."""
        return self in TERMINAL


TERMINAL = frozenset({State.FINISHED, State.FAILED, State.CANCELED})
"""States a job does not leave."""
CANCELED_BY_REQUEST = "canceled by request"
"""The error a canceled job reports."""
