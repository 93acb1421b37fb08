"""One upsample run: decode -> VideoINR -> encode in three threads joined by bounded queues, so the GPU
(or the CPU cores torch uses) never waits on the encoder and memory stays bounded. The request and its
plan are ``worker.planning``'s, the inference stage ``worker.render``'s, the threads ``worker.stages``'.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.videoinr.upsampler import Upsampler
from worker.errors import CanceledError
from worker.media import VideoReader, VideoWriter
from worker.planning import OutputPlan, UpsampleRequest, plan_output
from worker.render import Renderer, Span, render_streams
from worker.runtime import ModelCache
from worker.stages import PipelineStoppedError, Stage, get, join_stage, put

QUEUE_FRAMES = 4
"""Frames each inter-stage queue holds (bounds memory at large sizes)."""


@dataclass
class UpsampleResult:
    """What a finished run made, and the seconds each stage was busy (they run in parallel threads)."""

    output: Path
    plan: OutputPlan
    frames: int
    seconds: float
    stages: dict[str, float]


def load_upsampler(
    request: UpsampleRequest, cache: ModelCache | None = None, weights: dict[str, torch.Tensor] | None = None
) -> Upsampler:
    """The request's model on its device, wrapped for whole-frame inference; ``weights``: a job's adapted
    weights to run instead of the served ones (``ModelCache.upsampler``)."""
    return (cache or ModelCache()).upsampler(
        request.model, request.device, request.backend, half=request.half, bf16=request.bf16, tile=request.tile,
        weights=weights,
    )  # fmt: skip


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
            audio_from=source if request.keeps_audio else None,
            high_bit_depth=reader.info.bit_depth > 8,
            atomic=atomic,
            cuda=upsampler.device.type == "cuda",
            slow=plan.slowmo,
        )
        pipeline = UpsamplePipeline(reader, writer, plan, progress, should_stop)
        path = pipeline.run(upsampler)
    stages = {"read": pipeline.reading.busy, **upsampler.times.seconds, "write": pipeline.writing.busy}
    return UpsampleResult(path, plan, pipeline.written, time.perf_counter() - started, stages)
