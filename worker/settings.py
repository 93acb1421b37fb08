"""What workers read from ``VINR_*`` environment variables (the gateway's ``Settings`` extends it), and
the Redis keys and TTLs both sides use.

At the bottom of the import graph (as RQ's ``defaults``): workers never import the gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ParameterError

CANCEL_TTL = 24 * 3600
"""Seconds a cancellation flag is kept in Redis (the gateway sets it, the running job reads it)."""


def cancel_key(job_id: str) -> str:
    """Redis key whose presence tells a running job to stop."""
    return f"vinr:cancel:{job_id}"


class RuntimeSettings(BaseSettings):
    """What every process that runs a model reads: ``vinr upsample`` as well as workers and the gateway."""

    model_config = SettingsConfigDict(env_prefix="VINR_")

    render_streams: int | None = Field(default=None, ge=1)
    """How many frame pairs render at once on a CPU (None: ``worker.render.render_streams`` decides)."""
    cache_dir: Path | None = None
    """Where ONNX exports and TensorRT engines are cached (None: ``$XDG_CACHE_HOME/vinr`` or ``~/.cache/vinr``)."""
    ort_providers: str | None = None
    """ONNX Runtime execution providers to use, comma-separated, best first (None: the best available)."""
    ort_provider_options: dict[str, dict[str, str]] = {}
    """Options per ONNX Runtime provider (JSON: provider name -> options), added to vinr's own."""


def runtime_settings() -> RuntimeSettings:
    """The environment's ``RuntimeSettings``; ParameterError naming the variable when one is malformed."""
    try:
        return RuntimeSettings()
    except ValidationError as exc:
        names = ", ".join(f"VINR_{str(error['loc'][0]).upper()}" for error in exc.errors())
        raise ParameterError(f"{names}: {exc.errors()[0]['msg']}") from exc


class WorkerSettings(RuntimeSettings):
    """The settings both a worker and the gateway need. Durations in seconds."""

    redis_url: str | None = None
    """Redis for the RQ queue; unset: ``vinr serve`` runs jobs in-process (embedded mode)."""
    queue: str = "vinr"
    """RQ queue name the gateway enqueues to and workers listen on."""
    data_dir: Path = Path("vinr-data")
    """Job folders (uploads and results); shared by gateway and workers."""
    models_dir: Path | None = None
    """Extra folder of checkpoints served by name, besides the bundled ones."""
    heartbeat_ttl: int = 20
    """Seconds after which a running job whose worker stopped heartbeating counts as abandoned."""
    device: str = "auto"
    """Device workers run models on (``auto``, ``cpu``, ``cuda:N``)."""
    backend: Literal["auto", "torch", "onnx"] = "auto"
    """How workers run VideoINR: torch, onnx (ONNX Runtime; the onnx extra or the Docker image) or auto."""
    bf16: bool = False
    """What ``vinr upsample --bf16`` does, for every job and preview: on a CPU with native bfloat16 (AVX-512
    BF16 or AMX) the convolutions in bfloat16, within 0.01 dB; faster on some CPUs and slower on others, so
    measure first (docs/benchmarks.md); on CUDA the whole model under bfloat16 autocast; float32 elsewhere
    and on the onnx backend."""
    encoder: Literal["auto", "cpu", "nvenc"] = "auto"
    """Which encoder of a job's codec runs where the job does not say: ``auto`` NVENC when the worker renders on
    CUDA and NVENC opens there (else the CPU encoder, logged with the reason), ``cpu``, or ``nvenc`` (a job
    fails with the reason when it cannot open)."""
    max_adapt_seconds: float = Field(300.0, ge=0)
    """Most seconds of ``adapt`` (test-time adaptation) a job may ask for: the gateway refuses more (422) and a
    worker never spends more, whatever a job says (0: adaptation is off)."""
    nice: int = 10
    """CPU niceness workers add to themselves: a job is batch work, so on a shared machine the gateway's
    requests and previews come first (0: as the shell started them)."""
    redis_wait: float = 600.0
    """Seconds a worker's Redis commands keep retrying while Redis is away (then the worker reconnects anew)."""
