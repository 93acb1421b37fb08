"""Frames in -> VideoINR -> frames out: output times, scene cuts, tiles, overlapped stages.

Decoding, inference and encoding run in three threads joined by bounded queues, so the GPU (or the
CPU cores torch uses) is never waiting on the encoder and memory stays bounded. Output frame ``n``
is shown at ``start + n / fps``, ``round(duration * fps)`` frames in all (the input's duration runs
from its first frame to the end of its last), so the output lasts as long as the input. Each is made
from the two input frames around it by timestamp (variable frame rate works); the last ones hold the
last input frame. Across a scene cut nothing is blended or warped: a time there takes the nearer
frame alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import torch

from models import registry
from models.registry import DEFAULT_MODEL
from models.videoinr.upsampler import FrameFormat, UpsampleOptions, Upsampler
from worker.errors import CanceledError, ParameterError, VinrError
from worker.media import (
    Frame,
    OutputOptions,
    VideoInfo,
    VideoReader,
    VideoWriter,
    check_encodable,
    choose_encoder,
    even_size,
)
from worker.runtime import ModelCache, choose_backend, choose_device, choose_dtype
from worker.scenes import SceneCutDetector

MAX_SCALE = 8.0
"""Largest spatial factor accepted (the shipped models are trained on [1, 4])."""
MAX_FPS = 1000.0
"""Largest output frame rate accepted, frames per second."""
MAX_SIDE = 32768
"""Largest output width or height accepted, pixels (the service's VINR_MAX_OUTPUT_PIXELS is lower)."""
QUEUE_FRAMES = 4
"""Frames each inter-stage queue holds (bounds memory at large sizes)."""


@dataclass(frozen=True)
class UpsampleRequest:
    """What to make of a video; plain data, so a queued job can carry it as JSON."""

    scale: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    time_factor: float | None = None
    model: str = DEFAULT_MODEL
    device: str = "auto"
    half: bool = False
    bf16: bool = False
    tile: int | None = None  # None: 512 on a CPU, as large as the device's memory allows on a GPU
    backend: str = "auto"
    output: OutputOptions = field(default_factory=OutputOptions)


@dataclass(frozen=True)
class OutputPlan:
    """The output's size and rate, fixed before the first frame."""

    width: int
    height: int
    fps: Fraction
    frames: int  # estimate from the container's duration (exact for constant-rate input)


@dataclass
class UpsampleResult:
    """What a finished run made, and the seconds each stage was busy (they run in parallel threads)."""

    output: Path
    plan: OutputPlan
    frames: int
    seconds: float
    stages: dict[str, float]


def plan_output(info: VideoInfo, request: UpsampleRequest, check_nvenc: bool = True) -> OutputPlan:
    """Check the request against the input and fix the output size (made even where needed) and rate.

    ``check_nvenc``: a request that forces NVENC fails here unless it opens on this machine (a gateway
    whose jobs run on other machines leaves that to the worker)."""
    for name in ("scale", "fps", "time_factor"):
        value = getattr(request, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ParameterError(f"plan_output: {name} must be a positive finite number, got {value!r}")
    if request.width or request.height:
        if any(v is not None and not 0 < v <= MAX_SIDE for v in (request.width, request.height)):
            raise ParameterError(f"plan_output: width and height must be between 1 and {MAX_SIDE}")
        width = request.width or round(info.width * request.height / info.height)
        height = request.height or round(info.height * request.width / info.width)
    else:
        scale = 1.0 if request.scale is None else request.scale
        if not 1.0 <= scale <= MAX_SCALE:
            raise ParameterError(f"plan_output: scale must be between 1 and {MAX_SCALE:g}, got {scale:g}")
        width, height = round(info.width * scale), round(info.height * scale)
    if max(width / info.width, height / info.height) > MAX_SCALE:
        raise ParameterError(f"plan_output: {width}x{height} is more than {MAX_SCALE:g}x the input")
    if request.fps is not None and request.time_factor is not None:
        raise ParameterError("plan_output: give fps or time_factor, not both")
    if request.fps is not None:
        fps = Fraction(min(request.fps, 2 * MAX_FPS)).limit_denominator(1001)
    else:
        fps = info.fps * Fraction(min(request.time_factor or 1, 2 * MAX_FPS)).limit_denominator(1000)
    if not 0 < fps <= MAX_FPS:
        raise ParameterError(f"plan_output: fps must be in (0, {MAX_FPS:g}], got {float(fps):g}")
    pix_fmt = request.output.output_pix_fmt(info.bit_depth > 8)
    width, height = even_size(width, height, pix_fmt)
    check_encodable(request.output.encoder, width, height, pix_fmt)
    if check_nvenc and request.output.encoder_kind == "nvenc":
        choose_encoder(request.output, width, height, pix_fmt, cuda=True)
    return OutputPlan(width, height, fps, max(1, round(info.duration * fps)))


def load_upsampler(request: UpsampleRequest, cache: ModelCache | None = None) -> Upsampler:
    """The request's model on its device, wrapped for whole-frame inference."""
    device = choose_device(request.device)
    backend = choose_backend(request.backend, device)
    dtype = choose_dtype(device, request.half, request.bf16, backend)
    try:
        model = (cache or ModelCache()).get(request.model, device, dtype, backend)
    except registry.CheckpointError as exc:
        raise ParameterError(str(exc)) from exc
    return Upsampler(model, device, dtype, UpsampleOptions(tile=request.tile))


class PreviewsFirst:
    """While a preview renders in this process, upsample jobs here wait before their next frame pair.

    A preview is one frame and someone is looking at the page for it; a job is hours of frames. Sharing
    the CPU (and torch's thread pool) with a running job made a preview several times slower, so in
    embedded mode the job steps aside. Workers are other processes and are not paused.
    """

    LONGEST_WAIT = 60.0
    """Seconds a job waits at most for previews (a stuck preview never stalls a job for longer)."""

    def __init__(self):
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
        self.work, self.stop, self.error, self.busy = target, stop, None, 0.0

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
    chosen = os.environ.get("VINR_RENDER_STREAMS", "").strip()
    if chosen:
        if not chosen.isdigit() or int(chosen) < 1:
            raise ParameterError(f"VINR_RENDER_STREAMS must be a positive integer, not {chosen!r}")
        streams = int(chosen)
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
        return self.start + index / float(self.plan.fps)

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
            if previous_code is None:
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
        duration = previous.duration or last_step or 1.0 / float(self.plan.fps)
        # round(input duration * fps) frames in all: the output lasts as long as the input, within half a frame
        self.alone(previous_code, self.pending_before(previous.time + duration - 0.5 / float(self.plan.fps)))


class UpsamplePipeline:
    """One run: a decode thread, inference in the calling thread (``Renderer``), an encode thread,
    joined by bounded queues; a shared stop event ends every wait when one of them fails."""

    def __init__(
        self,
        reader: VideoReader,
        writer: VideoWriter,
        plan: OutputPlan,
        progress: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
        span: Span | None = None,
    ):
        self.reader, self.writer, self.plan, self.span = reader, writer, plan, span
        self.progress, self.should_stop = progress, should_stop
        self.stop = threading.Event()
        self.frames_in: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.rendered: queue.Queue = queue.Queue(QUEUE_FRAMES)
        self.written = 0
        self.reading = Stage(self.read, "read", self.stop)
        self.writing = Stage(self.write, "write", self.stop)

    def read(self, stage: Stage) -> None:
        frames, started = self.reader.frames(), time.perf_counter()
        for frame in frames:
            stage.busy += time.perf_counter() - started
            put(self.frames_in, frame, self.stop)
            started = time.perf_counter()

    def write(self, stage: Stage) -> None:
        while (item := get(self.rendered, self.stop)) is not None:
            started = time.perf_counter()
            self.writer.write(*item)
            stage.busy += time.perf_counter() - started
            self.written += 1
            if self.progress:
                self.progress(self.written, max(self.plan.frames, self.written))

    def check(self) -> None:
        if self.should_stop and self.should_stop():
            raise CanceledError("run_upsample: canceled")

    def emit(self, image, t: float) -> None:
        self.check()
        put(self.rendered, (image, t), self.stop)

    def run(self, upsampler: Upsampler) -> Path:
        """Make every output frame and close the writer; on any failure abort it and raise the cause."""
        self.reading.start()
        self.writing.start()
        try:
            streams, threads = render_streams(upsampler)
            renderer = Renderer(
                upsampler, self.plan, self.emit, self.span, self.check, streams, threads, self.writer.device_format
            )
            renderer.run(lambda: get(self.frames_in, self.stop, self.reading))
            put(self.rendered, None, self.stop)
            join_stage(self.writing, self.should_stop)
            if self.reading.error or self.writing.error:
                raise PipelineStoppedError
            return self.writer.close()
        except BaseException as exc:
            self.stop.set()
            self.writing.join(timeout=5)
            self.writer.abort()
            failed = self.reading.error or self.writing.error
            if isinstance(exc, PipelineStoppedError) and failed is not None:
                raise failed from None  # the stage that stopped the pipeline says why
            raise
        finally:
            self.stop.set()
            self.reading.join(timeout=5)


def run_upsample(
    source: str | Path,
    output: str | Path,
    request: UpsampleRequest,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    upsampler: Upsampler | None = None,
    atomic: bool = True,
) -> UpsampleResult:
    """Upsample ``source`` into ``output``; OUT is complete or absent (atomic), never half written."""
    started = time.perf_counter()
    with VideoReader(source) as reader:
        plan = plan_output(reader.info, request)
        upsampler = upsampler or load_upsampler(request)
        writer = VideoWriter(
            output,
            plan.width,
            plan.height,
            plan.fps,
            request.output,
            audio_from=source,
            high_bit_depth=reader.info.bit_depth > 8,
            atomic=atomic,
            cuda=upsampler.device.type == "cuda",
        )
        pipeline = UpsamplePipeline(reader, writer, plan, progress, should_stop)
        path = pipeline.run(upsampler)
    stages = {"read": pipeline.reading.busy, **upsampler.times.seconds, "write": pipeline.writing.busy}
    return UpsampleResult(path, plan, pipeline.written, time.perf_counter() - started, stages)
