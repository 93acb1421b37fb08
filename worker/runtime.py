"""Where models run: device choice, dtype, and a per-process cache of loaded models."""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import registry
from models.extras import needs_extra
from models.videoinr.network import PairState
from models.videoinr.upsampler import UpsampleOptions, Upsampler
from worker.errors import ParameterError
from worker.settings import WorkerSettings, runtime_settings

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


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AVX-512 BF16 or AMX); elsewhere oneDNN emulates it,
    7.5x slower than float32 (docs/benchmarks.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_dtype(device: torch.device, half: bool, bf16: bool = False, backend: str = "torch") -> torch.dtype:
    """float16 for ``half`` and bfloat16 for ``bf16`` on CUDA; bfloat16 on a CPU with native bfloat16 (for its
    convolutional stages, models.videoinr.upsampler); float32 otherwise (half precision is slower there, and
    the ``onnx`` backend has no bfloat16 path)."""
    if bf16 and backend == "onnx":
        log.warning("bfloat16 runs on the torch backend only; ONNX Runtime runs %s", "float16" if half else "float32")
        bf16 = False
    if device.type == "cuda":
        return torch.bfloat16 if bf16 else torch.float16 if half else torch.float32
    if bf16 and native_bf16():
        return torch.bfloat16
    if half or bf16:
        what = "--half applies on CUDA only" if half and not bf16 else "this CPU has no native bfloat16"
        log.warning("%s; running in float32 on %s", what, device)
    return torch.float32


class ModelCache:
    """Loaded networks kept for the life of a process, keyed by weights checksum, device, dtype and backend;
    ``upsampler`` is the one way from (model, device, backend, precision) to a ready ``Upsampler``."""

    def __init__(self, search: tuple[Path, ...] = ()):
        self.search = tuple(search)
        self._models: dict[tuple[str, str, torch.dtype, str], nn.Module | OnnxNetwork] = {}

    @classmethod
    def for_settings(cls, settings: WorkerSettings) -> ModelCache:
        """A cache that also serves the checkpoints of ``VINR_MODELS_DIR`` by name."""
        return cls((settings.models_dir,) if settings.models_dir else ())

    def upsampler(
        self,
        model: str,
        device: str = "auto",
        backend: str = "auto",
        *,
        half: bool = False,
        bf16: bool = False,
        tile: int | None = None,
        weights: dict[str, torch.Tensor] | None = None,
    ) -> Upsampler:
        """``model`` (a served name or a path) on ``device`` with ``backend``, in the precision asked for,
        wrapped for whole-frame inference; ParameterError for an unknown model or backend. ``weights``: a
        state of ``model``'s network to run instead of its own (a job's adapted weights: run by torch,
        on a copy that is not cached, so no other job sees them)."""
        target = choose_device(device)
        chosen = "torch" if weights is not None else choose_backend(backend, target)
        dtype = choose_dtype(target, half, bf16, chosen)
        try:
            network = self.get(model, target, dtype, chosen)
        except registry.CheckpointError as exc:
            raise ParameterError(str(exc)) from exc
        if weights is not None:
            network = copy.deepcopy(network)
            network.load_state_dict(weights)
        return Upsampler(network, target, dtype, UpsampleOptions(tile=tile))

    def module(self, model: str, device: str = "auto") -> nn.Module:
        """``model``'s torch network in float32 on ``device`` (shared: never train it in place)."""
        try:
            return self.get(model, choose_device(device), torch.float32, "torch")
        except registry.CheckpointError as exc:
            raise ParameterError(str(exc)) from exc

    def get(self, name: str, device: torch.device, dtype: torch.dtype, backend: str = "torch"):
        """The torch module (``backend="torch"``) or its ONNX Runtime network (``"onnx"``)."""
        path = registry.resolve(name, self.search)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        key = (digest, str(device), dtype, backend)
        if key not in self._models:
            if backend == "onnx":
                self._models[key] = load_onnx(path, device, dtype)
            else:  # half precision runs under autocast over float32 weights (models.videoinr.upsampler)
                self._models[key] = registry.load(path, device=device)
        return self._models[key]


BACKENDS = ("auto", "torch", "onnx")
"""Inference backends: ``torch`` runs the network module, ``onnx`` its exported graphs in ONNX Runtime."""
AUTO_BACKEND = {"cpu": "torch", "cuda": "torch"}
"""What ``auto`` picks per device type: the faster in docs/benchmarks.md (ONNX Runtime's CUDA and TensorRT
providers have not been measured yet, so CUDA keeps torch)."""
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
"""ONNX Runtime execution providers in order of preference per device type (the available ones are used)."""


def cache_dir() -> Path:
    """``VINR_CACHE_DIR``, else ``$XDG_CACHE_HOME/vinr``, else ``~/.cache/vinr``."""
    chosen = runtime_settings().cache_dir
    if chosen is not None:
        return chosen
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vinr"


def choose_backend(spec: str, device: torch.device) -> str:
    """``auto`` -> the faster backend measured on this device type; ``onnx`` needs onnxruntime."""
    if spec not in BACKENDS:
        raise ParameterError(f"choose_backend: {spec!r} is not a backend; use {', '.join(BACKENDS)}")
    if spec == "auto":
        wanted = AUTO_BACKEND.get(device.type, "torch")
        return wanted if wanted == "torch" or onnx_available() else "torch"
    if spec == "onnx" and not onnx_available():
        raise ParameterError("choose_backend: the onnx backend needs onnx and onnxruntime: pip install 'vinr[onnx]'")
    return spec


def onnx_available() -> bool:
    """Whether onnxruntime and onnx import (the ``onnx`` extra is installed)."""
    try:
        with needs_extra("onnx"):
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def providers_for(device: torch.device) -> list[str]:
    """The execution providers to ask for, best first: ``VINR_ORT_PROVIDERS`` (comma-separated) or those
    of ``PROVIDERS`` that this onnxruntime has."""
    with needs_extra("onnx"):
        import onnxruntime
    available = onnxruntime.get_available_providers()
    named = runtime_settings().ort_providers
    if named:
        wanted = [name.strip() for name in named.split(",") if name.strip()]
        missing = [name for name in wanted if name not in available]
        if missing:
            raise ParameterError(f"providers_for: {missing} not in this onnxruntime (it has {available})")
        return wanted
    chosen = [name for name in PROVIDERS.get(device.type, ()) if name in available]
    if device.type == "cuda" and not any(name != "CPUExecutionProvider" for name in chosen):
        raise ParameterError(f"providers_for: onnxruntime has no GPU provider ({available}); install onnxruntime-gpu")
    return chosen


def provider_options(providers: list[str], device: torch.device, folder: Path) -> list[dict]:
    """Options per provider: the device index, TensorRT's engine cache in the export's folder, and what
    ``VINR_ORT_PROVIDER_OPTIONS`` (JSON: provider name -> options) adds or overrides."""
    extra = runtime_settings().ort_provider_options
    options = []
    for name in providers:
        base: dict = {}
        if name in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            base["device_id"] = str(device.index or 0)
        if name == "TensorrtExecutionProvider":
            base |= {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(folder / "trt")}
        options.append(base | {k: str(v) for k, v in extra.get(name, {}).items()})
    return options


def export_folder(weights: Path, opset: int, dtype: torch.dtype, provider: str) -> Path:
    """The cache folder of one export: keyed by the checkpoint's hash, opset, dtype, provider and format."""
    from models.videoinr import export

    digest = export.sha256(weights)[:20]
    kind = str(dtype).removeprefix("torch.")
    return cache_dir() / "onnx" / f"{weights.stem}-{digest}-opset{opset}-{kind}-{provider}-v{export.FORMAT}"


def export_is_valid(folder: Path, weights: Path, opset: int, dtype: torch.dtype) -> bool:
    """Whether ``folder`` holds a complete export of ``weights`` whose every file still has its hash."""
    from models.videoinr import export

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if (
            manifest.get("format") != export.FORMAT
            or manifest.get("checkpoint_sha256") != export.sha256(weights)
            or manifest.get("opset") != opset
            or manifest.get("dtype") != str(dtype).removeprefix("torch.")
        ):
            return False
        return all(
            export.sha256(folder / manifest["graphs"][s]["file"]) == manifest["graphs"][s]["sha256"]
            for s in export.STAGES
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cached_export(weights: Path, opset: int, dtype: torch.dtype, provider: str) -> Path:
    """The export folder for these options, made (or made again, when stale or corrupt) under a lock."""
    from models.videoinr import export

    folder = export_folder(weights, opset, dtype, provider)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process exports; the others wait and then reuse it
        if export_is_valid(folder, weights, opset, dtype):
            return folder
        if folder.exists():
            log.warning("ONNX export %s is stale or corrupt; exporting again", folder)
            shutil.rmtree(folder)
        building = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
        try:
            export.export(weights, building, opset, dtype == torch.float16)
            building.rename(folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


class OnnxNetwork:
    """VideoINR's three stages in ONNX Runtime sessions, with the methods ``Upsampler`` calls.

    Tensors cross as NumPy arrays on the host (ONNX Runtime copies them to a GPU provider's device).
    """

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, providers: list[str]):
        with needs_extra("onnx"):
            import onnxruntime
        from models.videoinr import export

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: decoding and encoding run beside inference in this process
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        settings = provider_options(providers, device, folder)
        self.sessions = {
            stage: onnxruntime.InferenceSession(
                str(folder / f"{stage}.onnx"), options, providers=providers, provider_options=settings
            )
            for stage in export.STAGES
        }
        self.pair_outputs = export.PAIR_OUTPUTS
        self.providers = self.sessions["query"].get_providers()
        self.folder, self.dtype = folder, dtype

    def _array(self, tensor: torch.Tensor):
        return tensor.detach().to("cpu", self.dtype).contiguous().numpy()

    def encode_frame(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.sessions["encoder"].run(None, {"image": self._array(image)})[0])

    def encode_pair(self, image0, image1, feat0, feat1) -> PairState:
        feeds = {"image0": image0, "image1": image1, "feat0": feat0, "feat1": feat1}
        outputs = self.sessions["pair"].run(None, {k: self._array(v) for k, v in feeds.items()})
        maps = dict(zip(self.pair_outputs, (torch.from_numpy(a) for a in outputs)))
        images = torch.cat([image0, image1], 1)
        return PairState(images, images, maps["flows"], maps["warp_images"], maps["spatial_rows"], maps["decoder_maps"])

    def query_points(self, state: PairState, points, times, cell, chunk: int = 65536) -> torch.Tensor:
        """RGB ``(1, 3, T, N)``, ``chunk // T`` points per run (as ``VideoINR.query_points``)."""
        maps = {name: self._array(getattr(state, name)) for name in self.pair_outputs}
        stamps = np.asarray([times], dtype=maps["flows"].dtype)
        cells = np.asarray([cell], dtype=maps["flows"].dtype)
        step = max(1, chunk // len(times))
        out = [
            self.sessions["query"].run(
                None, {**maps, "points": self._array(part)[None], "times": stamps, "cell": cells}
            )[0]
            for part in points.split(step)
        ]
        return torch.from_numpy(np.concatenate(out, 3))


def load_onnx(weights: Path, device: torch.device, dtype: torch.dtype) -> OnnxNetwork:
    """A checkpoint's cached ONNX export in ONNX Runtime (exported first when missing, stale or corrupt)."""
    from models.videoinr import export

    providers = providers_for(device)
    folder = cached_export(weights, export.DEFAULT_OPSET, dtype, providers[0])
    try:
        return OnnxNetwork(folder, device, dtype, providers)
    except Exception as exc:  # onnxruntime raises its own types; a graph it cannot load is rebuilt once
        log.warning("ONNX Runtime could not load %s (%s); exporting again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return OnnxNetwork(cached_export(weights, export.DEFAULT_OPSET, dtype, providers[0]), device, dtype, providers)
