"""The ONNX Runtime backend: same pixels as torch, a cache that is never trusted blindly, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models import registry
from models.videoinr import export
from models.videoinr.upsampler import UpsampleOptions, Upsampler
from tests.media import texture_frames, video_frames, write_clip
from worker.pipeline import run_upsample
from worker.planning import UpsampleRequest
from worker.runtime import ModelCache, OnnxNetwork, cached_export, export_folder

pytest.importorskip("onnxruntime", reason="the onnx extra is part of vinr[dev]")
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("VINR_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> np.ndarray:
    """Two frames of a real H.264 clip written and decoded with PyAV, as floats in [0, 1]."""
    path = write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", texture_frames(3, 36, 52, velocity=(2.0, 1.0)))
    return video_frames(path)[1][:2].astype(np.float32) / 255


@pytest.mark.parametrize(("scale", "times"), [(2.0, [0.0, 0.5]), (3.5, [0.0, 1 / 3, 2 / 3])], ids=["2x2x", "3.5x3x"])
def test_onnx_runtime_matches_torch_with_tiles(clip, scale, times):
    models = ModelCache()
    networks = {backend: models.get("videoinr-s", CPU, torch.float32, backend) for backend in ("torch", "onnx")}
    assert isinstance(networks["onnx"], OnnxNetwork)
    height, width = round(clip.shape[1] * scale), round(clip.shape[2] * scale)
    frames = {}
    for backend, network in networks.items():
        upsampler = Upsampler(network, options=UpsampleOptions(tile=16, halo=8, chunk=4000))
        assert len(upsampler.tiles(*clip.shape[1:3])) > 4
        first, second = upsampler.features(clip[0]), upsampler.features(clip[1])
        frames[backend] = np.stack(upsampler.render(first, second, times, height, width))
    assert frames["onnx"].shape == (len(times), height, width, 3)
    assert np.abs(frames["onnx"] - frames["torch"]).max() < 1e-3


def test_upsample_runs_on_the_onnx_backend(tmp_path):
    source = write_clip(tmp_path / "in.mp4", texture_frames(4, 32, 48))
    request = UpsampleRequest(scale=2, time_factor=2, backend="onnx", device="cpu")
    result = run_upsample(source, tmp_path / "out.mp4", request)
    times, frames = video_frames(result.output)
    assert frames.shape[1:] == (64, 96, 3) and len(times) == result.frames == 8


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated graph", "missing graph", "manifest not JSON"])
def test_a_corrupt_cache_entry_is_rebuilt(damage):
    weights = registry.resolve("videoinr-s")
    folder = cached_export(weights, export.DEFAULT_OPSET, torch.float32, "CPUExecutionProvider")
    manifest = json.loads((folder / "manifest.json").read_text())
    query = folder / "query.onnx"
    if damage == "flipped byte":
        corrupt(query)
    elif damage == "truncated graph":
        query.write_bytes(query.read_bytes()[:1000])
    elif damage == "missing graph":
        query.unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    again = cached_export(weights, export.DEFAULT_OPSET, torch.float32, "CPUExecutionProvider")
    assert again == folder == export_folder(weights, export.DEFAULT_OPSET, torch.float32, "CPUExecutionProvider")
    rebuilt = json.loads((folder / "manifest.json").read_text())
    assert rebuilt["graphs"]["query"]["sha256"] == export.sha256(query) == manifest["graphs"]["query"]["sha256"]
    OnnxNetwork(folder, CPU, torch.float32, ["CPUExecutionProvider"])  # loads


def test_cache_key_follows_the_checkpoint(tmp_path):
    weights = registry.resolve("videoinr-s")
    copy = tmp_path / "mine.safetensors"
    model = registry.load(weights)
    with torch.no_grad():
        model.decoder[-1].bias.add_(0.01)
    registry.save(model, copy, {"note": "changed weights"})
    a = export_folder(weights, 17, torch.float32, "CPUExecutionProvider")
    b = export_folder(copy, 17, torch.float32, "CPUExecutionProvider")
    assert a != b and a != export_folder(weights, 18, torch.float32, "CPUExecutionProvider")


def test_missing_onnxruntime_names_the_extra(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "onnxruntime.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'onnxruntime'\", name='onnxruntime')\n"
    )
    source = write_clip(tmp_path / "in.mp4", texture_frames(2, 32, 32))
    env = {**os.environ, "PYTHONPATH": f"{shadow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = tmp_path / "o.mp4"
    argv = [sys.executable, "-m", "service.cli", "upsample", str(source), "-o", str(out), "--backend", "onnx"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'vinr[onnx]'" in done.stderr
    assert not out.exists()
