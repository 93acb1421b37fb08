"""The self-hosting files say what the README promises (no Docker engine runs here: their text is checked)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compose_publishes_the_api_on_loopback_unless_told_otherwise():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert '"${VINR_BIND:-127.0.0.1}:8000:8000"' in compose
    assert '"--appendonly", "yes"' in compose  # a Redis restart keeps the queue


def test_the_image_installs_from_the_lock_and_fails_its_build_on_a_missing_dependency():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'pip install -c requirements.lock ".[onnx-gpu]"' in dockerfile
    assert "onnxruntime-gpu==$ORT_VERSION" in dockerfile  # the same version as the lock's CPU onnxruntime
    assert 'cpu) pip install -c requirements.lock ".[onnx]" "onnxruntime==$ORT_VERSION"' in dockerfile
    assert "ORT_FLAVOUR: cpu" in (ROOT / "docker-compose.cpu.yml").read_text()  # the CPU stack gets the CPU build
    assert "vinr-smoke" in dockerfile and (ROOT / ".ci" / "smoke").is_file()


def test_the_gpu_worker_gets_the_drivers_video_capability_for_nvenc():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "NVIDIA_DRIVER_CAPABILITIES: compute,utility,video" in compose
    assert "capabilities: [gpu, compute, utility, video]" in compose
