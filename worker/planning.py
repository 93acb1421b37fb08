"""What an upsample asks for and what it will make: the request, its checks and limits, the output plan.

``plan_output`` runs before anything is queued or decoded (the gateway calls it on the probed input), so
a request the input or an encoder cannot honour is a ParameterError, never a failed job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from models.registry import DEFAULT_MODEL
from worker.errors import ParameterError
from worker.media import OutputOptions, VideoInfo, check_encodable, choose_encoder, even_size

MAX_SCALE = 8.0
"""Largest spatial factor accepted (the shipped models are trained on [1, 4])."""
MAX_FPS = 1000.0
"""Largest output frame rate accepted, frames per second."""
MAX_SIDE = 32768
"""Largest output width or height accepted, pixels (the service's VINR_MAX_OUTPUT_PIXELS is lower)."""
MAX_SLOWMO = 16
"""Largest slow-motion factor accepted (the input's time shown this many times slower)."""
SLOWMO_AUDIO = ("drop", "keep")
"""What slow motion does with the input's audio: drops it, or keeps it slowed to the video's length
(pitch kept)."""


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
    slowmo: int | None = None
    """Slow motion: the input's time shown this many times slower, at the rate ``fps``/``time_factor`` give
    (the input's by default), so ``slowmo`` times the frames and the duration."""
    slowmo_audio: str = "drop"
    """With ``slowmo``: ``drop`` the audio, or ``keep`` it slowed to the video's length (pitch kept)."""
    adapt: float | None = None
    """Seconds of test-time adaptation to the input before rendering (``worker.adapting``); None: none."""
    output: OutputOptions = field(default_factory=OutputOptions)

    @property
    def keeps_audio(self) -> bool:
        return not self.slowmo or self.slowmo_audio == "keep"


@dataclass(frozen=True)
class OutputPlan:
    """The output's size and rate, fixed before the first frame."""

    width: int
    height: int
    fps: Fraction
    """The rate the output plays at (its container's)."""
    frames: int  # estimate from the container's duration (exact for constant-rate input)
    slowmo: int = 1
    """Output seconds per input second."""

    @property
    def sample_fps(self) -> Fraction:
        """Output frames per second of the input's time: the times the frames are made at."""
        return self.fps * self.slowmo


def plan_output(info: VideoInfo, request: UpsampleRequest, check_nvenc: bool = True) -> OutputPlan:
    """Check the request against the input and fix the output size (made even where needed) and rate.

    ``check_nvenc``: a request that forces NVENC fails here unless it opens on this machine (a gateway
    whose jobs run on other machines leaves that to the worker)."""
    for name in ("scale", "fps", "time_factor"):
        value = getattr(request, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ParameterError(f"plan_output: {name} must be a positive finite number, got {value!r}")
    if request.width or request.height:
        if request.scale is not None:
            raise ParameterError("plan_output: give a scale or a width/height, not both")
        if any(v is not None and not 0 < v <= MAX_SIDE for v in (request.width, request.height)):
            raise ParameterError(f"plan_output: width and height must be between 1 and {MAX_SIDE}")
        # one side given: the other keeps the aspect ratio
        width = request.width or round(info.width * (request.height or 0) / info.height)
        height = request.height or round(info.height * (request.width or 0) / info.width)
        if width < info.width or height < info.height:
            raise ParameterError(
                f"plan_output: {width}x{height} is smaller than the input ({info.width}x{info.height}); "
                "vinr only upsamples"
            )
    else:
        scale = 1.0 if request.scale is None else request.scale
        if not 1.0 <= scale <= MAX_SCALE:
            raise ParameterError(f"plan_output: scale must be between 1 and {MAX_SCALE:g}, got {scale:g}")
        width, height = round(info.width * scale), round(info.height * scale)
    if max(width / info.width, height / info.height) > MAX_SCALE:
        raise ParameterError(f"plan_output: {width}x{height} is more than {MAX_SCALE:g}x the input")
    if request.fps is not None and request.time_factor is not None:
        raise ParameterError("plan_output: give fps or time_factor, not both")
    slowmo = 1 if request.slowmo is None else request.slowmo
    if not (isinstance(slowmo, int) and 1 <= slowmo <= MAX_SLOWMO):
        raise ParameterError(f"plan_output: slowmo must be a whole number from 1 to {MAX_SLOWMO}, got {slowmo!r}")
    if request.slowmo_audio not in SLOWMO_AUDIO:
        raise ParameterError(f"plan_output: slowmo_audio must be one of {', '.join(SLOWMO_AUDIO)}")
    asked = request.fps if request.fps is not None else float(info.fps) * (request.time_factor or 1)
    if asked > MAX_FPS and request.fps is not None:  # the value asked for, before any rounding
        raise ParameterError(f"plan_output: fps must be in (0, {MAX_FPS:g}], got {asked:g}")
    if asked > MAX_FPS:
        raise ParameterError(
            f"plan_output: time factor {request.time_factor:g} makes {asked:g} fps from {float(info.fps):g}; "
            f"the most is {MAX_FPS:g}"
        )
    if request.fps is not None:
        fps = Fraction(request.fps).limit_denominator(1001)
    else:
        fps = info.fps * Fraction(request.time_factor or 1).limit_denominator(1000)
    if not 0 < fps <= MAX_FPS:
        raise ParameterError(f"plan_output: fps must be in (0, {MAX_FPS:g}], got {float(fps):g}")
    pix_fmt = request.output.output_pix_fmt(info.bit_depth > 8)
    width, height = even_size(width, height, pix_fmt)
    check_encodable(request.output.encoder, width, height, pix_fmt)
    if check_nvenc and request.output.encoder_kind == "nvenc":
        choose_encoder(request.output, width, height, pix_fmt, cuda=True)
    return OutputPlan(width, height, fps, max(1, round(info.duration * fps * slowmo)), slowmo)
