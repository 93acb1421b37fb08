"""Where models run: device choice, dtype, and a per-process cache of loaded models."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from models import registry
from worker.errors import ParameterError

log = logging.getLogger(__name__)


def choose_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ParameterError(f"choose_device: {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"choose_device: {spec} requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ParameterError(f"choose_device: {spec} requested but only {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise ParameterError(f"choose_device: {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def choose_dtype(device: torch.device, half: bool) -> torch.dtype:
    """float16 for ``half`` on CUDA; CPUs keep float32 (half precision is slower there)."""
    if half and device.type != "cuda":
        log.warning("--half applies on CUDA only; running in float32 on %s", device)
    return torch.float16 if half and device.type == "cuda" else torch.float32


class ModelCache:
    """Loaded models kept for the life of a process, keyed by weights checksum, device and dtype."""

    def __init__(self, search: tuple[Path, ...] = ()):
        self.search = tuple(search)
        self._models: dict[tuple[str, str, torch.dtype], nn.Module] = {}

    def get(self, name: str, device: torch.device, dtype: torch.dtype) -> nn.Module:
        path = registry.resolve(name, self.search)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        key = (digest, str(device), dtype)
        if key not in self._models:
            self._models[key] = registry.load(path, device=device, dtype=dtype)
        return self._models[key]
