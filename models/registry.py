"""Model registry and checkpoint format.

A model is built from a spec ``{"name": ..., "args": {...}}``. A checkpoint is two files side by
side: ``NAME.safetensors`` (weights; the spec is also in its metadata) and ``NAME.json`` (the card:
spec, training data, command, steps, wall time, metrics, code version). Loading never unpickles.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
"""Folder of the served checkpoints (``NAME.safetensors`` + ``NAME.json``)."""
DEFAULT_MODEL = "videoinr-s48"
"""The checkpoint ``vinr upsample``, the API and the workers use when none is named: the 48-wide network, which
meets issue #10's quality targets and, with the CPU inference kernels, its speed target on the machine measured
(docs/quality.md); ``videoinr-s`` (v4) is the faster, slightly weaker choice."""

_BUILTIN_MODULES = {"videoinr": "models.videoinr.network", "dnerv": "models.dnerv.network"}
"""Model name -> module that registers it, imported on first use (nothing runs at import time)."""

_MODELS: dict[str, type[nn.Module]] = {}


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed or does not match its spec."""


def register(name: str):
    """Class decorator: make ``make({"name": name, ...})`` build this class."""

    def decorator(cls):
        _MODELS[name] = cls
        return cls

    return decorator


def make(spec: dict[str, Any]) -> nn.Module:
    """Build a model from ``{"name": ..., "args": {...}}``."""
    name = spec.get("name")
    if name not in _MODELS and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _MODELS:
        raise CheckpointError(f"make: unknown model {name!r}; known: {sorted(_BUILTIN_MODULES)}")
    model = _MODELS[name](**spec.get("args", {}))
    model.spec = {"name": name, "args": dict(spec.get("args", {}))}  # type: ignore[assignment]  # plain data on a Module
    return model


def served(search: tuple[Path, ...] = ()) -> list[str]:
    """Names of the checkpoints in the bundled folder and in ``search`` folders."""
    return sorted({p.stem for folder in (CHECKPOINT_DIR, *search) for p in Path(folder).glob("*.safetensors")})


def card_summary(name: str, search: tuple[Path, ...] = ()) -> dict[str, Any]:
    """What a person choosing a served checkpoint needs from its card: its size, its quality on the held-out
    carphone clip (Y-PSNR of the in-between frames, dB, by scale/time factor) and its output rate on a CPU
    (megapixels a second, with the machine); empty where the card does not say."""
    try:
        card = json.loads(resolve(name, search).with_suffix(".json").read_text())
    except (CheckpointError, OSError, ValueError):
        return {}
    carphone = card.get("carphone") if isinstance(card.get("carphone"), dict) else {}
    speed = card.get("cpu_speed") if isinstance(card.get("cpu_speed"), dict) else {}
    return {
        "parameters": card.get("cost", {}).get("parameters"),
        "quality": {k: v for k, v in carphone.get("y_psnr_between", {}).items() if k in ("2x/2x", "4x/4x")},
        "speed": speed.get("output_mp_per_s", {}),
        "speed_machine": speed.get("machine"),
    }


def resolve(name_or_path: str | Path, search: tuple[Path, ...] = ()) -> Path:
    """Path of a checkpoint's ``.safetensors`` file from a path, or a name served here or in ``search``."""
    path = Path(name_or_path)
    candidates = [path, path.with_suffix(".safetensors")]
    candidates += [Path(folder) / f"{name_or_path}.safetensors" for folder in (*search, CHECKPOINT_DIR)]
    for candidate in candidates:
        if candidate.suffix == ".safetensors" and candidate.is_file():
            return candidate
    raise CheckpointError(f"resolve: no checkpoint {str(name_or_path)!r}; served: {served(search)}")


def save(model: nn.Module, path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``path`` (.safetensors) and its JSON card; returns the weights path."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"spec": json.dumps(spec)})
    card = {"name": path.stem, "spec": spec, **card}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


def read_card(name_or_path: str | Path) -> dict[str, Any]:
    """The JSON card of a checkpoint (falls back to the spec in the weights' metadata)."""
    weights = resolve(name_or_path)
    card_path = weights.with_suffix(".json")
    if card_path.is_file():
        try:
            return json.loads(card_path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"read_card: {card_path} is not JSON: {exc}") from exc
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "spec" not in metadata:
        raise CheckpointError(f"read_card: {weights} has no card and no spec metadata")
    return {"name": weights.stem, "spec": json.loads(metadata["spec"])}


def load(name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Rebuild a model from its checkpoint, in eval mode on ``device``; the card is ``model.card``."""
    weights = resolve(name_or_path)
    card = read_card(weights)
    model = make(card["spec"])
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"load: {weights} does not match its spec: {exc}") from exc
    model.card = card  # type: ignore[assignment]
    return model.to(device=device, dtype=dtype).eval()
