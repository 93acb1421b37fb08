"""Shared fixtures: a tiny random VideoINR checkpoint and generated clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import registry
from tests.media import texture_frames, write_clip
from tests.networks import TINY, random_videoinr


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    model = random_videoinr(TINY)
    return registry.save(model, tmp_path_factory.mktemp("models") / "tiny", {"note": "random, for tests"})


@pytest.fixture(scope="session")
def clip_with_audio(tmp_path_factory) -> Path:
    """1 s, 30 fps, 64x48 H.264 MP4 with a 440 Hz AAC tone."""
    return write_clip(tmp_path_factory.mktemp("clips") / "tone.mp4", texture_frames(30, 48, 64), audio=True)


@pytest.fixture(scope="session")
def vfr_odd_mkv(tmp_path_factory) -> Path:
    """175x97 MKV with variable frame intervals (1/30 s and 1/15 s alternating) and audio."""
    times, t = [], 0.0
    for i in range(16):
        times.append(round(t, 3))
        t += 1 / 30 if i % 2 else 1 / 15
    return write_clip(
        tmp_path_factory.mktemp("clips") / "vfr.mkv",
        texture_frames(16, 97, 175, seed=1),
        times=times,
        pix_fmt="yuv444p",
        audio=True,
    )


@pytest.fixture(scope="session")
def nrff_clip():
    """16 frames of a moving 64x80 texture, and their NRFF bitstream (fitted once per session)."""
    from fractions import Fraction

    from models.nrff.fit import FitOptions, fit
    from tests.media import texture_frames

    frames = texture_frames(16, 64, 80, seed=7)
    data = fit(frames, Fraction(30), FitOptions(bpp=0.6, steps=200, minutes=None, gop=8, residual_share=0))
    return frames, data


@pytest.fixture(scope="session")
def nrff_residual_clip(nrff_clip):
    """``nrff_clip``'s frames and an NRFF bitstream at 1.5 bpp whose latent residual has 40% of the bits."""
    from fractions import Fraction

    from models.nrff.fit import FitOptions, fit

    frames = nrff_clip[0]
    options = FitOptions(bpp=1.5, steps=200, minutes=None, gop=8, residual_share=0.4, residual_steps=150)
    return frames, fit(frames, Fraction(30), options)


@pytest.fixture(scope="session")
def dnerv_library():
    """Three 12-frame 64x64 clips moving differently, and their D-NeRV library (fitted once), with a
    latent residual (CONF format 5) so every test of it covers the RESD section too."""
    from fractions import Fraction

    from models.dnerv.fit import DNeRVOptions, Video, fit
    from tests.media import texture_frames

    videos = [
        Video(f"clip{i}", texture_frames(12, 64, 64, seed=10 + i, velocity=(1.0 + i, 0.5)), Fraction(25))
        for i in range(3)
    ]
    options = DNeRVOptions(bpp=1.0, steps=80, minutes=None, keyframe_share=0.5, residual_share=0.3, residual_steps=100)
    return videos, fit(videos, options)


def pytest_runtest_setup(item):
    """Every test starts under the normal scheduling policy, whatever an earlier test encoded: SVT-AV1
    as root leaves real-time threads behind (models/scheduling.py), and worker processes started from
    a real-time thread inherit it, and their spinning threads starve the rest."""
    from models.scheduling import leave_realtime

    leave_realtime()
