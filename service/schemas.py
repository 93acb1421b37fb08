"""Request and response models of the HTTP API (they document the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from worker.states import State


class Progress(BaseModel):
    """How far a running job is."""

    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = Field(None, description="output frames per second made so far")
    eta_s: float | None = Field(None, description="estimated seconds left")
    stage: Literal["adapting", "rendering"] | None = Field(
        None, description="with adapt: learning the video first (adapting), then rendering"
    )
    adapt: dict | None = Field(
        None,
        description="with adapt: while adapting, its done fraction, steps and budget; after, how it went (used, "
        "gain_db on held-out windows of the video, steps, seconds)",
    )


class OutputSize(BaseModel):
    """What an upsample makes, as planned when it was accepted."""

    width: int
    height: int
    fps: float = Field(description="the rate the output plays at")
    frames: int = Field(description="output frames, estimated from the input's duration")


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    kind: Literal["upsample", "decode"]
    state: State
    progress: Progress
    error: str | None = Field(None, description="why the job failed or ended, one line")
    params: dict = Field(default_factory=dict, description="the parameters it was created with")
    name: str | None = Field(None, description="the uploaded file's name, where the upload gave one")
    output: OutputSize | None = Field(None, description="an upsample's planned output")
    queue_position: int | None = Field(None, description="a queued job's place in the queue, 1 = next")
    created_at: float
    ended_at: float | None = Field(None, description="when it finished, failed or was canceled (Unix time)")
    result_url: str
    events_url: str


class Problem(BaseModel):
    """An error response."""

    detail: str
    field: str | None = Field(None, description="the request parameter it is about, where it is about one")


class ModelInfo(BaseModel):
    """A served checkpoint, as its card describes it."""

    name: str
    default: bool
    parameters: int | None = None
    quality: dict[str, float] = Field(
        default_factory=dict, description="Y-PSNR (dB) of carphone's in-between frames, by scale/time factor"
    )
    speed: dict[str, float] = Field(default_factory=dict, description="output megapixels a second, by workload")
    speed_machine: str | None = Field(None, description="where the speed was measured")


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    detail: str = ""


class JobList(BaseModel):
    """A page of the caller's jobs, newest first."""

    jobs: list[JobOut]
    total: int = Field(description="the caller's jobs in all")
    next: str | None = Field(None, description="the next page's URL; null on the last page")


class PreviewOut(BaseModel):
    """A preview with a comparison: both frames as PNG data URLs, and where the frame lies in the output."""

    index: int = Field(description="the frame's number in the output (0-based)")
    time: float = Field(description="the frame's time in the output, seconds")
    width: int
    height: int
    fps: float
    frames: int = Field(description="output frames of the whole job")
    image: str = Field(description="the upsampled frame, a data:image/png;base64 URL")
    compare: str | None = Field(None, description="the compared frame (bicubic), a data:image/png;base64 URL")


class InputInfo(BaseModel):
    """What a video holds, as ``POST /probe`` reads it."""

    width: int
    height: int
    fps: float
    frames: int | None = Field(None, description="as the container says, when it says")
    duration: float = Field(description="seconds")
    codec: str
    pix_fmt: str
    bit_depth: int
    rotation: int
    audio: list[str] = Field(description="codecs of its audio streams (kept in the output)")
    subtitles: list[str]


class Limits(BaseModel):
    """What this server accepts (its VINR_MAX_* settings and the fixed bounds of the parameters)."""

    max_scale: float
    max_fps: float
    max_side: int
    max_upload_bytes: int
    max_input_seconds: float
    max_output_pixels: int
    max_output_frames: int
    max_output_work: float = Field(description="output frames x pixels per frame of one job")
    max_adapt_seconds: float = Field(description="most seconds of adapt a job may ask for (0: adaptation is off)")
    api_key_required: bool
    models: list[str] = Field(description="the served model names")
    default_model: str
