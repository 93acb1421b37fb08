"""The gateway's settings, read from ``VINR_*`` environment variables: the workers' (``worker.settings``) and
the gateway's own (keys, upload and output limits, job lifetimes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from worker.settings import WorkerSettings


class Settings(WorkerSettings):
    """Every knob of the service. Sizes in bytes, durations in seconds."""

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated API keys; empty: no authentication. A job is visible only to its creator's key."""
    published_host: str | None = None
    """The address clients reach the gateway on where it is not ``--host`` (compose publishes the container's
    0.0.0.0 on ``VINR_BIND``, 127.0.0.1 by default): the warning about running without API keys is about it."""
    max_upload_bytes: int = 2 * 1024**3
    max_input_seconds: float = 3600.0
    max_output_pixels: int = 7680 * 4320
    """Largest output frame (width x height)."""
    max_output_frames: int = 500_000
    max_output_work: float = 2e11
    """Largest output frames x pixels per frame of one job."""
    job_timeout: int = 6 * 3600
    result_ttl: int = 24 * 3600
    """How long finished jobs and their files are kept."""
    failure_ttl: int = 24 * 3600
    retries: int = 1
    """Times a job whose worker died is tried again."""
    upload_idle_timeout: float = 30.0
    """Seconds an upload may send nothing before it is dropped (408)."""
    upload_min_rate: float = 8192.0
    """Bytes a second an upload must average once it has run ``upload_idle_timeout`` seconds, else it is
    dropped (408); 0: no minimum."""
    max_concurrent_uploads: int = 32
    """Uploads received at once, all keys together; more get 429."""
    max_concurrent_uploads_per_key: int = 8
    """Uploads received at once per API key (without keys, per client address); more get 429."""
    segment_seconds: float = Field(30.0, ge=0)
    """Input seconds per segment of a long upsample: its segments run on any free workers and a killed
    worker loses only its segment; 0: never segment."""
    preview_concurrency: int = Field(1, ge=0)
    """Previews the gateway renders at once (it renders them itself, never behind queued jobs); 0: no previews."""
    preview_wait: float = 20.0
    """Seconds a preview waits for a free rendering slot before it gets 503."""
    preview_timeout: float = 60.0
    """Seconds a preview may take in all before it gets 504 (it still holds its slot until it ends)."""
    metrics_public: bool = False
    """Serve /metrics without a key even when VINR_API_KEYS is set."""

    def output_limit_error(self, width: int, height: int, frames: int) -> str | None:
        """Why an output of ``frames`` frames of ``width`` x ``height`` passes a VINR_MAX_OUTPUT_* limit, or None."""
        pixels = width * height
        if pixels > self.max_output_pixels:
            return f"an output frame of {width}x{height} passes VINR_MAX_OUTPUT_PIXELS ({self.max_output_pixels})"
        if frames > self.max_output_frames:
            return f"{frames} output frames pass VINR_MAX_OUTPUT_FRAMES ({self.max_output_frames})"
        if frames * pixels > self.max_output_work:
            return (
                f"{frames} frames of {width}x{height} pass VINR_MAX_OUTPUT_WORK ({self.max_output_work:g} frame-pixels)"
            )
        return None

    @field_validator("api_keys", mode="before")
    @classmethod
    def split_keys(cls, value):
        """``"a, b"`` -> ``["a", "b"]``."""
        return [k.strip() for k in value.split(",") if k.strip()] if isinstance(value, str) else value
