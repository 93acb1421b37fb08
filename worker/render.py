"""The inference stage of an upsample: input frames in, output frames at the output times out.

Output frame ``n`` shows the input at ``start + n / sample_fps``, ``round(duration * sample_fps)`` frames in
all (the input's duration runs from its first frame to the end of its last), so the output lasts as long as
the input, or ``slowmo`` times as long (``OutputPlan.sample_fps`` is the output rate times ``slowmo``).
Each is made from the two input frames around it by timestamp (variable frame rate works); the last
ones hold the last input frame. Across a scene cut nothing is blended or warped: a time there takes the
nearer frame alone. On a CPU several frame pairs render at once (``render_streams``); in embedded mode a
preview rendering in the same process goes first (``PREVIEWS_FIRST``).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from models.videoinr.upsampler import FrameFormat, Upsampler
from worker.errors import VinrError
from worker.media import Frame
from worker.planning import OutputPlan
from worker.scenes import SceneCutDetector
from worker.settings import runtime_settings


class PreviewsFirst:
    """While a preview renders in this process, upsample jobs here wait before their next frame pair.

    A preview is one frame and someone is looking at the page for it; a job is hours of frames. Sharing
    the CPU (and torch's thread pool) with a running job made a preview several times slower, so in
    embedded mode the job steps aside. Workers are other processes and are not paused.
    """

    LONGEST_WAIT = 60.0
    """Seconds a job waits at most for previews (a stuck preview never stalls a job for longer)."""

    def __init__(self) -> None:
        self.active = 0
        self.idle = threading.Condition()

    @contextlib.contextmanager
    def rendering(self) -> Iterator[None]:
        with self.idle:
            self.active += 1
        try:
            yield
        finally:
            with self.idle:
                self.active -= 1
                self.idle.notify_all()

    def wait(self) -> None:
        with self.idle:
            self.idle.wait_for(lambda: self.active == 0, timeout=self.LONGEST_WAIT)


PREVIEWS_FIRST = PreviewsFirst()
"""This process's preview priority (``worker.preview`` renders inside it, ``Renderer`` waits on it)."""


@dataclass(frozen=True)
class Span:
    """The part of a run one segment makes (``worker.segments``): output frames from number ``first``
    whose times fall in ``[begin, end)``, numbered from the whole input's first frame time ``start``."""

    start: float
    begin: float
    end: float | None
    first: int


MAX_RENDER_STREAMS = 4
"""At most this many frame pairs render at once on a CPU (each holds a pair's state and output frames)."""


def render_streams(upsampler: Upsampler) -> tuple[int, int]:
    """How many frame pairs render at once, and how many torch threads each uses (and the thread that
    encodes frames meanwhile): one pair with every thread on a GPU or a one-thread CPU; otherwise
    ``threads + 1`` pairs (at most ``MAX_RENDER_STREAMS``) of ``threads // pairs`` threads (at least one).

    Measured on 2 cores (docs/benchmarks.md): a pair's many small convolutions, samplings and query
    products use a second thread poorly, and the Python between them leaves a core idle; three pairs of
    one thread each made 13% more frames per second than two pairs sharing both threads (which made
    1.1x to 1.2x more than one pair). ``VINR_RENDER_STREAMS`` (a positive integer) sets the number of
    pairs; their threads are still split as above."""
    threads = torch.get_num_threads()
    chosen = runtime_settings().render_streams
    if chosen is not None:
        streams = chosen
    elif upsampler.device.type != "cpu" or threads < 2:
        return 1, threads
    else:
        streams = min(threads + 1, MAX_RENDER_STREAMS)
    return streams, threads if streams == 1 else max(1, threads // streams)


class Renderer:
    """The inference stage: turns the input frame sequence into output frames at the output times.

    With ``streams`` > 1, that many frame pairs render at once in threads of their own while this
    thread encodes the next input frames; their frames are emitted in order, as with one stream. Each
    of those threads, and this one while it runs, uses ``threads`` torch threads (``render_streams``).
    """

    def __init__(
        self,
        upsampler: Upsampler,
        plan: OutputPlan,
        emit: Callable[[object, float], None],
        span: Span | None = None,
        check: Callable[[], None] | None = None,
        streams: int = 1,
        threads: int | None = None,
        into: FrameFormat | None = None,
    ):
        self.upsampler, self.plan, self.emit = upsampler, plan, emit
        self.check = check  # raises to stop (a canceled job), looked at before each frame pair
        self.detector = SceneCutDetector()
        self.start: float | None = span.start if span else None
        self.index = span.first if span else 0  # next output frame
        self.span = span
        self.streams = max(1, streams)
        self.into = into  # the encoder's pixel format, which a GPU converts frames to before they leave it
        self.threads = threads
        self.inflight: deque[tuple[Future, list[list[float]]]] = deque()
        self.pool: ThreadPoolExecutor | None = None

    def submit(self, first, second, rel: list[float], times: list[list[float]]) -> None:
        """Render ``first``/``second`` at relative times ``rel``, the image for ``rel[i]`` going out at each
        output time of ``times[i]``: now with one stream, else in a render thread, emitting the oldest
        pairs' frames once more than ``streams`` are out."""
        size = (self.plan.height, self.plan.width)
        if self.streams == 1:
            self.emit_all(self.upsampler.render_frames(first, second, rel, *size, into=self.into), times)
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.streams, thread_name_prefix="vinr-render", initializer=self.set_threads)
        job = self.pool.submit(self.upsampler.render_frames, first, second, rel, *size, into=self.into)
        self.inflight.append((job, times))
        self.drain(self.streams)

    def drain(self, keep: int = 0) -> None:
        """Emit, in order, the frames of the oldest pairs until at most ``keep`` are out."""
        while len(self.inflight) > keep:
            job, times = self.inflight.popleft()
            self.emit_all(job.result(), times)

    def emit_all(self, images: list, times: list[list[float]]) -> None:
        for image, group in zip(images, times):
            for t in group:
                self.emit(image, t)

    def time_of(self, index: int) -> float:
        return (self.start or 0.0) + index / float(self.plan.sample_fps)

    def pending_before(self, end: float) -> list[float]:
        """Output times not yet made that fall before ``end``; advances the counter."""
        times = []
        while self.time_of(self.index) < end - 1e-9:
            times.append(self.time_of(self.index))
            self.index += 1
        return times

    def alone(self, encoded, times: list[float]) -> None:
        """Frames at ``times`` that show one input frame (a cut, or past the last frame)."""
        if times:
            self.submit(encoded, encoded, [0.0], [times])

    def set_threads(self) -> None:
        """The calling thread's torch (OpenMP) thread count for this run (a per-thread setting)."""
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def run(self, frames: Callable[[], Frame | None]) -> None:
        """Make and emit every output frame of the span (all of them without one)."""
        saved = torch.get_num_threads()
        try:
            self.set_threads()
            self.render_all(frames)
            self.drain()
        finally:
            for job, _ in self.inflight:
                job.cancel()
            if self.pool is not None:
                self.pool.shutdown(wait=True)  # no render thread outlives a failed or canceled run
            self.inflight.clear()
            if torch.get_num_threads() != saved:
                torch.set_num_threads(saved)  # also what threads started later in this process begin with

    def render_all(self, frames: Callable[[], Frame | None]) -> None:
        previous, previous_code, last_step = None, None, None
        span = self.span
        while (frame := frames()) is not None:
            PREVIEWS_FIRST.wait()
            if self.check:
                self.check()
            if span is not None and frame.time < span.begin - 1e-9:  # before the segment: the cut detector only
                self.detector.push(frame.image)
                previous, previous_code = frame, None
                continue
            code = self.upsampler.features(frame.image)
            cut = self.detector.push(frame.image)
            if previous_code is None or previous is None:
                if self.start is None:
                    self.start = frame.time
            else:
                step = frame.time - previous.time
                times = self.pending_before(frame.time)
                if cut:
                    self.alone(previous_code, [t for t in times if t < previous.time + step / 2])
                    self.alone(code, [t for t in times if t >= previous.time + step / 2])
                elif times:
                    self.submit(previous_code, code, [(t - previous.time) / step for t in times], [[t] for t in times])
                last_step = step
            previous, previous_code = frame, code
            if span is not None and span.end is not None and frame.time >= span.end - 1e-9:
                return  # the next segment's first frame: every frame of this one is made
        if previous is None:
            raise VinrError("Renderer: the input has no frames")
        duration = previous.duration or last_step or 1.0 / float(self.plan.sample_fps)
        # round(input duration * fps) frames in all: the output lasts as long as the input, within half a frame
        self.alone(previous_code, self.pending_before(previous.time + duration - 0.5 / float(self.plan.sample_fps)))
