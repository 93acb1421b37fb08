"""Which encoder a writer opens (NVENC or the CPU's), and the device path's frames through a real writer."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from models import registry
from models.videoinr.upsampler import UpsampleOptions, Upsampler
from worker.errors import ParameterError
from worker.media import NVENC, OutputOptions, VideoWriter, choose_encoder, codec_options
from worker.pipeline import run_upsample
from worker.planning import UpsampleRequest

HAS_NVENC = choose_encoder(OutputOptions(encoder_kind="auto"), 256, 256, "yuv420p", cuda=True)[0] in NVENC.values()
"""Whether NVENC opens on this machine (it does not without an NVIDIA GPU, as in CI)."""


def test_auto_picks_the_cpu_encoder_for_frames_made_on_the_cpu():
    assert choose_encoder(OutputOptions(), 640, 360, "yuv420p", cuda=False) == ("libx264", "frames are made on the CPU")
    assert choose_encoder(OutputOptions("hevc", encoder_kind="cpu"), 640, 360, "yuv420p", cuda=True)[0] == "libx265"


@pytest.mark.skipif(HAS_NVENC, reason="NVENC opens here")
def test_auto_on_cuda_without_nvenc_says_why_it_takes_the_cpu_encoder():
    encoder, why = choose_encoder(OutputOptions("av1"), 640, 360, "yuv420p", cuda=True)
    assert encoder == "libsvtav1" and "av1_nvenc does not open" in why


@pytest.mark.skipif(HAS_NVENC, reason="NVENC opens here")
@pytest.mark.parametrize(("codec", "reason"), [("h264", "h264_nvenc does not open"), ("vp9", "no NVENC counterpart")])
def test_forcing_nvenc_where_it_cannot_open_is_an_error(codec, reason):
    with pytest.raises(ParameterError, match=reason):
        choose_encoder(OutputOptions(codec, encoder_kind="nvenc"), 640, 360, "yuv420p", cuda=True)


def test_the_writer_logs_its_encoder_and_why(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="worker.media"):
        writer = VideoWriter(tmp_path / "a.mp4", 64, 48, 25, OutputOptions(preset="ultrafast"), cuda=False)
        writer.abort()
    assert "encoding with libx264 (frames are made on the CPU)" in caplog.text


def test_nvenc_quality_follows_crf_and_preset():
    options = codec_options("hevc_nvenc", OutputOptions("hevc", crf=24, preset="slow"), 30)
    assert options["cq"] == "24" and options["preset"] == "p6" and options["rc"] == "vbr"
    assert codec_options("av1_nvenc", OutputOptions("av1", preset="12"), 30)["preset"] == "p1"
    assert codec_options("h264_nvenc", OutputOptions(), 30)["cq"] == "18"


def yuv_planes(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray() for frame in container.decode(video=0)])


def test_device_path_frames_through_the_writer_equal_the_cpu_path(tmp_path, clip_with_audio):
    """A whole job on the device path (frames converted to yuv420p before they leave the device, as on CUDA)
    and on the CPU path, both lossless H.264: the same frame count, luma within one level, chroma within
    three on this fine texture (swscale's chroma filter is not exactly the 2x2 mean there) and one on average."""
    outputs = {}
    for path in ("cpu", "device"):
        upsampler = Upsampler(registry.load("videoinr-s"), options=UpsampleOptions(path=path, memory=1 << 30))
        request = UpsampleRequest(scale=2, time_factor=2, device="cpu", output=OutputOptions(crf=0, preset="ultrafast"))
        result = run_upsample(clip_with_audio, tmp_path / f"{path}.mp4", request, upsampler=upsampler)
        outputs[path] = yuv_planes(result.output)
        assert result.frames == 60
    difference = np.abs(outputs["cpu"].astype(int) - outputs["device"].astype(int))
    luma = outputs["cpu"].shape[1] * 2 // 3
    assert outputs["cpu"].shape == outputs["device"].shape and difference[:, :luma].max() <= 1
    assert difference[:, luma:].max() <= 3 and difference[:, luma:].mean() < 1
