"""Previews rendered by the gateway itself: a few at a time, never queued behind long jobs.

A preview is one output frame (``worker.preview``); it is cheap, so the gateway renders it in a thread
of its own with its own model cache instead of sending it to the job queue, where it could wait for
hours behind running jobs. ``VINR_PREVIEW_CONCURRENCY`` previews render at once; the next waits up
to ``VINR_PREVIEW_WAIT`` seconds for a slot, then gets 503.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from models.registry import DEFAULT_MODEL
from service.settings import Settings
from service.storage import new_job_id
from worker.media import VideoInfo
from worker.planning import OutputPlan, UpsampleRequest
from worker.preview import Preview, render_preview
from worker.runtime import ModelCache

STALE_AFTER = 3600
"""Seconds after which a preview upload folder left by a crashed gateway is swept."""


class Previewer:
    """The gateway's preview renderer: a model cache and a bounded number of rendering slots."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cache = ModelCache.for_settings(settings)
        self.slots = threading.BoundedSemaphore(max(1, settings.preview_concurrency))
        self.root = Path(settings.data_dir) / "previews"

    def folder(self) -> Path:
        """A new private folder for one preview's upload (the caller removes it)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.root / new_job_id()
        path.mkdir(mode=0o700)
        return path

    def limit(self, info: VideoInfo, plan: OutputPlan) -> str | None:
        """Why the service refuses this input or output size (the limits of ``POST /upsample``), or None."""
        if info.duration > self.settings.max_input_seconds:
            return (
                f"the input lasts {info.duration:.1f} s; VINR_MAX_INPUT_SECONDS is {self.settings.max_input_seconds:g}"
            )
        return self.settings.output_limit_error(plan.width, plan.height, 1)

    @property
    def enabled(self) -> bool:
        return self.settings.preview_concurrency > 0

    def preload(self) -> None:
        """Load the default model now (the gateway starts it in the background), so the first preview is quick."""
        if self.enabled:
            self.cache.upsampler(DEFAULT_MODEL, self.settings.device, self.settings.backend, bf16=self.settings.bf16)

    def check_enabled(self) -> None:
        if not self.enabled:
            raise HTTPException(503, "previews are turned off on this server (VINR_PREVIEW_CONCURRENCY=0)")

    def render(self, source: Path, params: dict, at: float, weights: Path | None = None) -> Preview:
        """Render in the calling thread once a slot is free (HTTPException 503 after VINR_PREVIEW_WAIT);
        ``weights``: a job's adapted weights."""
        self.check_enabled()
        if not self.slots.acquire(timeout=self.settings.preview_wait):
            raise HTTPException(
                503,
                f"previews are busy (VINR_PREVIEW_CONCURRENCY={self.settings.preview_concurrency}); try again shortly",
                headers={"Retry-After": "5"},
            )
        try:
            request = UpsampleRequest(
                **params, device=self.settings.device, backend=self.settings.backend, bf16=self.settings.bf16
            )
            return render_preview(source, request, at, self.cache, self.limit, weights)
        finally:
            self.slots.release()

    async def render_async(self, source: Path, params: dict, at: float, weights: Path | None = None) -> Preview:
        return await run_in_threadpool(self.render, source, params, at, weights)

    def sweep(self) -> None:
        """Remove preview folders older than STALE_AFTER (a gateway that died mid-preview left them)."""
        if not self.root.is_dir():
            return
        cutoff = time.time() - STALE_AFTER
        for path in self.root.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue
