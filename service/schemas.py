"""Request and response models of the HTTP API (they document the OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.states import State


class Progress(BaseModel):
    """How far a running job is."""

    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = Field(None, description="output frames per second made so far")
    eta_s: float | None = Field(None, description="estimated seconds left")


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    kind: Literal["upsample", "decode"]
    state: State
    progress: Progress
    error: str | None = Field(None, description="why the job failed, one line")
    params: dict = Field(default_factory=dict, description="the parameters it was created with")
    created_at: float
    result_url: str
    events_url: str


class Problem(BaseModel):
    """An error response."""

    detail: str


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    detail: str = ""
