"""CUDA inference matches the CPU (run with ``-m gpu`` on a machine with a GPU)."""

from __future__ import annotations

import pytest
import torch

from tests.networks import PRECISION_TOLERANCE, SERVED, precision_gap

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", SERVED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype, name):
    assert precision_gap("cuda", dtype, name) < PRECISION_TOLERANCE[dtype]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_render_never_waits_on_the_device_until_a_frame_is_read():
    """The device path queues a pair's encoding, queries, YUV conversion and copy out without one
    synchronisation (``set_sync_debug_mode`` raises on any), and its planes match the CPU's device path."""
    import numpy as np

    from models import registry
    from models.videoinr.upsampler import FrameFormat, UpsampleOptions, Upsampler
    from tests.clips import moving_texture

    a, b = (f.permute(1, 2, 0).numpy() for f in moving_texture(2, 90, 160))
    into = FrameFormat("yuv420p", 1)
    cuda = Upsampler(registry.load("videoinr-s48"), "cuda")
    cpu = Upsampler(registry.load("videoinr-s48"), "cpu", options=UpsampleOptions(path="device"))
    first, second = cuda.features(a), cuda.features(b)  # warm-up: cuDNN picks its algorithms
    cuda.render_frames(first, second, [0.5], 360, 640, into=into)[0].pixels()
    torch.cuda.set_sync_debug_mode("error")
    try:
        first, second = cuda.features(a), cuda.features(b)
        frames = cuda.render_frames(first, second, [0.25, 0.5, 0.75], 360, 640, into=into)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ref = cpu.render_frames(cpu.features(a), cpu.features(b), [0.25, 0.5, 0.75], 360, 640, into=into)
    for got, want in zip(frames, ref):
        assert np.abs(got.pixels().astype(int) - want.pixels().astype(int)).max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_job_encodes_with_nvenc_where_it_opens(tmp_path, clip_with_audio):
    import av

    from worker.media import OutputOptions, choose_encoder
    from worker.pipeline import run_upsample
    from worker.planning import UpsampleRequest

    encoder, why = choose_encoder(OutputOptions(), 128, 96, "yuv420p", cuda=True)
    request = UpsampleRequest(scale=2, time_factor=2, model="videoinr-s48", device="cuda")
    result = run_upsample(clip_with_audio, tmp_path / "out.mp4", request)
    with av.open(str(result.output)) as container:
        assert container.streams.video[0].codec_context.name == ("h264" if "h264" in encoder else encoder)
        assert sum(1 for _ in container.decode(video=0)) == result.frames == 60
    assert encoder == "h264_nvenc" or "does not open" in why  # data-centre Hopper chips have no NVENC
