"""Pipeline threads: a stage keeps its exception and busy time, and every wait on a queue ends when the
pipeline stops (a stage failed, or the job was canceled)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from worker.errors import CanceledError


class PipelineStoppedError(Exception):
    """Raised in a stage waiting on a queue when the pipeline stops (another stage failed, or cancel)."""


class Stage(threading.Thread):
    """A pipeline thread that keeps its exception for the main thread to raise, and its busy time.

    A stage that fails sets the shared ``stop`` event, so every other stage stops waiting on its
    queues instead of waiting forever for a partner that is gone. ``busy`` counts the seconds its work
    function reports as spent working (not waiting on a queue).
    """

    def __init__(self, target: Callable[[Stage], None], name: str, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.work, self.stop, self.busy = target, stop, 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work(self)
        except PipelineStoppedError:
            pass
        except BaseException as exc:  # handed to the main thread
            self.error = exc
            self.stop.set()


def put(q: queue.Queue, item, stop: threading.Event) -> None:
    """Blocking put that raises PipelineStoppedError when the pipeline stops."""
    while True:
        if stop.is_set():
            raise PipelineStoppedError
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def get(q: queue.Queue, stop: threading.Event, producer: Stage | None = None):
    """Blocking get; None at the end of the stream (a finished ``producer``), PipelineStoppedError on stop."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise PipelineStoppedError from None
            if producer is not None and not producer.is_alive():
                return None


def join_stage(stage: Stage, should_stop: Callable[[], bool] | None) -> None:
    """Wait for a stage to finish, raising CanceledError if the job is canceled meanwhile."""
    while stage.is_alive():
        stage.join(timeout=0.1)
        if should_stop and should_stop():
            raise CanceledError("run_upsample: canceled")
