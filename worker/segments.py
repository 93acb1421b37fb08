"""Segmented upsampling: one long video cut into segments rendered apart, then joined without re-encoding.

The plan cuts the input at input frame boundaries, at a keyframe when one lies near the target length
(encoders put keyframes at scene cuts, and a child's seek then lands on its first frame). Segment ``i``
owns the output frames whose times fall in ``[begin_i, begin_{i+1})``, exactly the ones the whole run
makes from the input frames of that range plus the one after it, so the joined output has the frames
and timestamps of the unsegmented run. A child decodes from a few frames before its range (the scene
cut detector remembers the last pairs) to the first frame of the next segment, and writes a video-only
file under the same encoder settings as every other segment; each starts with a keyframe, so the
segments' packets join into one bitstream. The join copies the original's audio and subtitles.

A segment file exists only when complete (written under a temporary name, then renamed), so a run
that resumes, or a retry after a worker died, redoes only the segments that are missing.
"""

from __future__ import annotations

import bisect
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av

from worker.errors import CanceledError, InputError, OutputError, ParameterError
from worker.folders import PLAN, JobFolder
from worker.media import CONTAINERS, FRAGMENTED, OutputOptions, VideoReader, VideoWriter, open_input
from worker.pipeline import UpsamplePipeline
from worker.planning import OutputPlan, UpsampleRequest, plan_output
from worker.render import Span
from worker.streams import AUDIO_LEAD, StreamCopier

WARMUP_FRAMES = 16
"""Input frames a segment decodes before its range, so its scene-cut detector sees what the whole run's saw."""
NEAR = 0.25
"""A keyframe within this fraction of the segment length from a target cut is taken instead of the target."""
SEGMENT_SUFFIX = ".mp4"
"""A job's segment files: MP4, as its result (segments are always of the output's kind: the same muxer
keeps the timestamps exact)."""


@dataclass(frozen=True)
class Segment:
    """One segment: its input range by time and the output frames it makes."""

    index: int
    begin: float
    """Its first input frame's time, seconds."""
    end: float | None
    """The next segment's first input frame's time (None: the last segment, to the end of the input)."""
    warm_from: float
    """Where its decode starts (``WARMUP_FRAMES`` input frames before ``begin``)."""
    first: int
    """Its first output frame's number."""
    frames: int
    """How many output frames it makes."""

    def file(self, folder: Path, suffix: str) -> Path:
        return JobFolder(folder).segment(self.index, suffix)


@dataclass(frozen=True)
class SegmentPlan:
    """The whole input's first frame time (output frame 0) and its segments, in order."""

    start: float
    segments: list[Segment]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    key: str = ""
    """What the segments were made for (the request), so a resumed run never mixes two requests' segments."""
    origin: int = 0
    """A decode's first frame number (its segments' frame ranges count from it)."""
    slowmo: int = 1
    """Output seconds per input second (slow motion): the join slows the audio as much."""
    audio: bool = True
    """Whether the join takes the source's audio and subtitles (an upsample's, unless slow motion drops them)."""

    def save(self, folder: Path) -> None:
        tmp = folder / f".{PLAN}.tmp"
        body = {
            "start": self.start,
            "key": self.key,
            "origin": self.origin,
            "slowmo": self.slowmo,
            "audio": self.audio,
            "segments": [asdict(s) for s in self.segments],
        }
        tmp.write_text(json.dumps(body))
        tmp.replace(folder / PLAN)

    @classmethod
    def load(cls, folder: Path) -> SegmentPlan:
        data = json.loads((folder / PLAN).read_text())
        segments = [Segment(**s) for s in data["segments"]]
        return cls(
            data["start"],
            segments,
            data.get("key", ""),
            data.get("origin", 0),
            data.get("slowmo", 1),
            data.get("audio", True),
        )

    def joiner(self, source: Path | None, output: Path, options: OutputOptions) -> Joiner:
        """The writer of the joined output: ``source``'s audio and subtitles where this plan keeps them."""
        return Joiner(source if self.audio else None, output, options, self.slowmo)


def frame_times(path: Path) -> tuple[list[float], set[float]]:
    """Presentation times of every video frame and of the keyframes, from the packets (nothing is decoded)."""
    container = open_input(path)
    try:
        stream = container.streams.video[0]
        times, keys = [], set()
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            time = float(packet.pts * packet.time_base)
            times.append(time)
            if packet.is_keyframe:
                keys.add(time)
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(f"frame_times: cannot read the frames of {path}: {exc}") from exc
    finally:
        container.close()
    return sorted(set(times)), keys


def plan_segments(times: list[float], keys: set[float], fps: Fraction, total: int, length: float) -> SegmentPlan:
    """Cut ``times`` (input frame times) into segments of about ``length`` seconds; ``total`` output
    frames at ``fps`` in all (the whole run's count)."""
    if not times:
        raise InputError("plan_segments: the input has no video frames")
    start, cuts = times[0], [0]
    key_cuts = [i for i, t in enumerate(times) if t in keys]  # frame numbers of the keyframes
    key_times = [times[i] for i in key_cuts]
    target = start + length
    while True:
        low = bisect.bisect_left(key_times, target - NEAR * length)
        high = bisect.bisect_right(key_times, target + NEAR * length)
        near = [key_cuts[j] for j in range(low, high) if key_cuts[j] > cuts[-1]]
        if near:
            cut = min(near, key=lambda i: abs(times[i] - target))
        else:  # no keyframe near: the frame nearest the target
            after = min(bisect.bisect_left(times, target), len(times) - 1)
            cut = min((max(after - 1, 0), after), key=lambda i: abs(times[i] - target))
        if cut <= cuts[-1] or times[-1] - times[cut] < length / 4:  # nothing left worth a segment of its own
            break
        cuts.append(cut)
        target = times[cut] + length

    def first_output(t: float) -> int:
        """The first output frame at or after input time ``t`` (as ``Renderer.pending_before`` counts)."""
        return min(total, max(0, math.ceil((t - start - 1e-9) * fps)))

    segments = []
    for index, cut in enumerate(cuts):
        end = times[cuts[index + 1]] if index + 1 < len(cuts) else None
        first = first_output(times[cut])
        stop = first_output(end) if end is not None else total
        warm = times[max(0, cut - WARMUP_FRAMES)]
        segments.append(Segment(index, times[cut], end, warm, first, stop - first))
    return SegmentPlan(start, segments)


def make_plan(source: Path, request: UpsampleRequest, length: float | None = None, count: int | None = None):
    """The output plan and the segment plan of ``request`` on ``source``: segments of ``length`` seconds,
    or ``count`` segments of equal length."""
    with VideoReader(source) as reader:
        plan = plan_output(reader.info, request)
        duration = reader.info.duration
    times, keys = frame_times(source)
    if count:
        length = max(duration, times[-1] - times[0]) / count
    if length is None:
        raise ValueError("make_plan: give a segment length or a count")
    segments = plan_segments(times, keys, plan.sample_fps, plan.frames, length)
    key = request_key(request)
    return plan, SegmentPlan(segments.start, segments.segments, key, 0, plan.slowmo, request.keeps_audio)


def request_key(request: UpsampleRequest) -> str:
    """The request fields a segment's pixels depend on (device, backend and tiling aside)."""
    fields = ("scale", "width", "height", "fps", "time_factor", "slowmo", "slowmo_audio", "adapt", "model")
    options = request.output
    return json.dumps(
        [[getattr(request, f) for f in fields], [options.codec, options.crf, options.preset, options.pix_fmt]]
    )


DECODE = "decode"
"""The key of a decode's segment plan (its segments are frame ranges of a neural bitstream)."""


def plan_frame_segments(start: int, stop: int, fps: Fraction, length: float) -> SegmentPlan:
    """A decode's frame range ``[start, stop)`` cut into ranges of about ``length`` seconds; segment
    times count from ``start``, as the decode's output does."""
    per = max(1, round(length * fps))
    cuts = list(range(start, stop, per))
    if len(cuts) > 1 and stop - cuts[-1] < per / 4:  # a scrap at the end joins the segment before
        cuts.pop()
    segments = []
    for index, first in enumerate(cuts):
        last = cuts[index + 1] if index + 1 < len(cuts) else stop
        begin = (first - start) / float(fps)
        end = (last - start) / float(fps) if index + 1 < len(cuts) else None
        segments.append(Segment(index, begin, end, begin, first - start, last - first))
    return SegmentPlan(0.0, segments, DECODE)


def segment_options(options: OutputOptions) -> OutputOptions:
    """The segments' encoding: the job's, in a plain (not fragmented) file. ``auto`` becomes the CPU encoder:
    segments made on different workers are joined into one stream, so they must come from one encoder."""
    kind = "cpu" if options.encoder_kind == "auto" else options.encoder_kind
    return OutputOptions(options.codec, options.crf, options.preset, options.pix_fmt, False, kind)


def render_segment(
    source: Path,
    output: Path,
    request: UpsampleRequest,
    plan: OutputPlan,
    segments: SegmentPlan,
    segment: Segment,
    upsampler,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Render one segment's output frames into ``output`` (video only), complete or absent."""
    output.parent.mkdir(mode=0o700, exist_ok=True)
    with VideoReader(source) as reader:
        reader.seek(segment.warm_from)
        writer = VideoWriter(
            output,
            plan.width,
            plan.height,
            plan.fps,
            segment_options(request.output),
            high_bit_depth=reader.info.bit_depth > 8,
            atomic=True,
            cuda=upsampler.device.type == "cuda",
            slow=plan.slowmo,
        )
        span = Span(segments.start, segment.begin, segment.end, segment.first)

        def counted(done: int, _total: int) -> None:
            if progress:
                progress(done, max(segment.frames, done))

        pipeline = UpsamplePipeline(reader, writer, plan, counted, should_stop, span=span)
        path = pipeline.run(upsampler)
    if segment.end is not None and pipeline.written != segment.frames:  # the last one's count is the input's
        output.unlink(missing_ok=True)
        raise OutputError(
            f"render_segment: segment {segment.index} made {pipeline.written} frames, not {segment.frames}"
        )
    return path


def join_segments(
    source: Path | None,
    output: Path,
    options: OutputOptions,
    work: Path,
    segments: SegmentPlan,
    make: Callable[[Segment, Path], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Write ``output`` from the segment files in ``work`` (of ``output``'s kind), in order;
    ``make(segment, path)`` renders a missing one first (one process doing every segment), else every
    file must exist. Returns the frames written."""
    joiner = segments.joiner(source, output, options)
    frames = 0
    try:
        for segment in segments.segments:
            if should_stop and should_stop():
                raise CanceledError("join_segments: canceled")
            path = segment.file(work, output.suffix)
            if not path.exists():
                if make is None:
                    raise OutputError(f"join_segments: segment {segment.index} is missing")
                make(segment, path)
            frames += joiner.append(path)
        joiner.close()
    except BaseException:
        joiner.abort()
        raise
    return frames


def run_segmented(
    source: Path,
    output: Path,
    request: UpsampleRequest,
    work: Path,
    upsampler,
    length: float | None = None,
    count: int | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[OutputPlan, SegmentPlan, int]:
    """Every segment in this process, one after another, joined into ``output`` as each is done.

    With ``resume``, a plan already in ``work`` for the same request is kept and its finished segments
    are not made again. Returns the output plan, the segment plan and the frames written.
    """
    work.mkdir(mode=0o700, exist_ok=True)
    plan, segments = make_plan(source, request, length, count)
    if resume and (work / PLAN).exists():
        saved = SegmentPlan.load(work)
        if saved.key != segments.key:
            raise ParameterError(f"run_segmented: {work} holds segments of other options; remove it to start anew")
        segments = saved
    else:
        shutil.rmtree(JobFolder(work).segments, ignore_errors=True)
    segments.save(work)
    done = [sum(s.frames for s in segments.segments if s.file(work, output.suffix).exists())]

    def make(segment: Segment, path: Path) -> None:
        def counted(frames: int, _total: int) -> None:
            if progress:
                progress(done[0] + frames, max(segments.frames, done[0] + frames))

        render_segment(source, path, request, plan, segments, segment, upsampler, counted, should_stop)
        done[0] += segment.frames

    frames = join_segments(source, output, request.output, work, segments, make, should_stop)
    return plan, segments, frames


class Joiner:
    """Writes the output from finished segment files in order: their packets copied, the source's audio
    and subtitles interleaved. Used at once after the last segment (RQ) or after each (embedded)."""

    def __init__(self, source: Path | None, output: Path, options: OutputOptions, slow: int = 1):
        muxer = CONTAINERS.get(output.suffix.lower(), "mp4")
        self.container = av.open(str(output), "w", format=muxer, options=FRAGMENTED if options.fragmented else {})
        self.source, self.muxer, self.slow = source, muxer, slow
        self.stream: av.video.stream.VideoStream | None = None
        self.copier: StreamCopier | None = None

    def append(self, segment_file: Path) -> int:
        """Copy one segment's video packets; returns how many."""
        count = 0
        with av.open(str(segment_file)) as part:
            video = part.streams.video[0]
            if self.stream is None:  # the first segment's stream parameters are every segment's
                self.stream = stream = self.container.add_stream_from_template(video)
                stream.time_base = video.time_base
                if self.source is not None:  # a neural bitstream has no audio
                    self.copier = StreamCopier(self.source, self.container, self.muxer, self.slow)
            for packet in part.demux(video):
                if packet.dts is None:
                    continue
                time = float(packet.pts * packet.time_base) if packet.pts is not None else None
                packet.stream = self.stream
                self.container.mux(packet)
                count += 1
                if time is not None and self.copier is not None:
                    self.copier.advance(time + AUDIO_LEAD)
        return count

    def close(self) -> None:
        if self.copier:
            self.copier.finish()
        self.container.close()

    def abort(self) -> None:
        if self.copier:
            self.copier.close()
        try:
            self.container.close()
        except (av.FFmpegError, OSError):
            pass
