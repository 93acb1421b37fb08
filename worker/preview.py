"""One output frame of an upsample, made at once: ``POST /preview`` and ``vinr upsample --preview``.

The frame is the one the full job would make nearest a given time: the same plan (size, rate), the
same two input frames around it, the same scene-cut rule. Only the input from the keyframe before that
time is decoded, so a preview late in a long video costs about what one early in it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
import torch
import torch.nn.functional as F

from worker.adapting import saved_upsampler
from worker.errors import InputError
from worker.media import Frame, VideoInfo, VideoReader
from worker.pipeline import load_upsampler
from worker.planning import OutputPlan, UpsampleRequest, plan_output
from worker.render import PREVIEWS_FIRST
from worker.runtime import ModelCache
from worker.scenes import SceneCutDetector

COMPARISONS = ("bicubic",)
"""What a preview can be compared with: the input frame nearest it, upscaled by that filter."""


@dataclass
class Preview:
    """One output frame, float32 ``(H, W, 3)`` in [0, 1], and where it lies in the output."""

    image: np.ndarray
    index: int
    """Its number in the output (0-based)."""
    time: float
    """Its time in the output, seconds."""
    plan: OutputPlan
    nearest: Frame
    """The input frame nearest it in time (the one a comparison shows)."""

    def bicubic(self) -> np.ndarray:
        """The nearest input frame upscaled to the output size by bicubic interpolation, float32 in [0, 1]."""
        pixels = torch.from_numpy(self.nearest.image).permute(2, 0, 1)[None]
        size = (self.plan.height, self.plan.width)
        return (
            F.interpolate(pixels, size=size, mode="bicubic", align_corners=False)[0]
            .permute(1, 2, 0)
            .clamp(0, 1)
            .numpy()
        )


def output_frame_at(info: VideoInfo, plan: OutputPlan, at: float) -> tuple[int, float]:
    """The output frame nearest ``at`` seconds from the start: its index and time (clamped to the output)."""
    if not math.isfinite(at):
        raise InputError(f"preview: the time must be a finite number of seconds, got {at!r}")
    index = min(max(round(at * float(plan.sample_fps)), 0), plan.frames - 1)
    return index, info.start + index / float(plan.sample_fps)


def frames_around(reader: VideoReader, time: float) -> tuple[Frame, Frame | None, bool]:
    """The last input frame at or before ``time``, the next one (None past the end), and whether a cut
    lies between them. Decodes from the keyframe before ``time``."""
    reader.seek(time)
    detector = SceneCutDetector()
    before = None
    for frame in reader.frames():
        cut = detector.push(frame.image)
        if frame.time <= time + 1e-9:
            before = frame
        elif before is None:  # the stream starts after ``time``: its first frame alone
            return frame, None, False
        else:
            return before, frame, cut
    if before is None:
        raise InputError("frames_around: the video has no frame to preview")
    return before, None, False


def render_preview(
    source, request: UpsampleRequest, at: float, cache: ModelCache | None = None, limit=None, weights=None
) -> Preview:
    """The output frame of ``request`` on ``source`` nearest ``at`` seconds.

    ``limit(info, plan)`` may refuse the input or the planned output with a message (the service's limits);
    ``weights``: a job's adapted weights (``adapted.safetensors``) to render with instead of the served ones.
    """
    with VideoReader(source) as reader:
        info = reader.info
        plan = plan_output(info, request)
        if limit is not None and (problem := limit(info, plan)):
            raise InputError(problem)
        index, time = output_frame_at(info, plan, at)
        before, after, cut = frames_around(reader, time)
    cache = cache or ModelCache()
    upsampler = saved_upsampler(request, cache, weights) if weights is not None else load_upsampler(request, cache)
    with PREVIEWS_FIRST.rendering():
        return render_frame(upsampler, plan, index, time, before, after, cut)


def render_frame(upsampler, plan: OutputPlan, index: int, time: float, before: Frame, after: Frame | None, cut: bool):
    """The output frame at ``time`` from the input frames around it, as ``Renderer`` makes it."""
    if after is None or cut:  # one input frame shows: past the end, or the nearer side of a cut
        shown = before if after is None or time - before.time < (after.time - before.time) / 2 else after
        code = upsampler.features(shown.image)
        image = upsampler.render(code, code, [0.0], plan.height, plan.width)[0]
        return Preview(image, index, time, plan, shown)
    rel = (time - before.time) / (after.time - before.time)
    image = upsampler.render(
        upsampler.features(before.image), upsampler.features(after.image), [rel], plan.height, plan.width
    )[0]
    return Preview(image, index, time, plan, before if rel <= 0.5 else after)


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB float image in [0, 1] as an 8-bit PNG (FFmpeg's encoder, through PyAV)."""
    pixels = np.ascontiguousarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = pixels.shape[1], pixels.shape[0], "rgb24"
    packets = codec.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")) + codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)
