"""Slow motion: the input's time shown K times slower, K times the frames at the asked rate; the audio
dropped or slowed with it; one run and a segmented run agree."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from tests.media import audio_span, texture_frames, video_frames, write_clip
from worker.errors import ParameterError
from worker.media import OutputOptions, VideoInfo
from worker.pipeline import load_upsampler, run_upsample
from worker.planning import UpsampleRequest, plan_output
from worker.segments import run_segmented
from worker.streams import tempo_chain


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1 s at 20 fps, 48x64, with a tone, a keyframe every 8 frames."""
    frames = texture_frames(20, 48, 64, seed=3, velocity=(2.0, 1.0))
    return write_clip(tmp_path_factory.mktemp("slowmo") / "clip.mp4", frames, fps=20, audio=True, keyframe_every=8)


def request(model, **kwargs) -> UpsampleRequest:
    output = OutputOptions(codec="ffv1")
    return UpsampleRequest(scale=1.5, model=str(model), device="cpu", output=output, **kwargs)


def test_slow_motion_makes_k_times_the_frames_at_the_input_rate(tmp_path, clip, tiny_model_path):
    result = run_upsample(clip, tmp_path / "slow.mkv", request(tiny_model_path, slowmo=4))
    times, _ = video_frames(tmp_path / "slow.mkv")
    assert result.frames == 80 and float(result.plan.fps) == 20
    assert times == pytest.approx([i / 20 for i in range(80)], abs=1e-6)  # 4 s: every frame 1/20 s apart
    with av.open(str(tmp_path / "slow.mkv")) as container:
        assert not container.streams.audio  # dropped unless asked to keep it


def test_kept_audio_is_slowed_to_the_video_and_segments_agree(tmp_path, clip, tiny_model_path):
    asked = request(tiny_model_path, slowmo=3, fps=30, slowmo_audio="keep")  # 90 frames per input second
    whole = run_upsample(clip, tmp_path / "whole.mkv", asked)
    assert whole.frames == 90 and float(whole.plan.fps) == 30
    start, seconds = audio_span(tmp_path / "whole.mkv")
    assert start == pytest.approx(0, abs=0.05) and seconds == pytest.approx(3.0, abs=0.1)  # 1 s of tone, 3x longer

    _, segments, frames = run_segmented(
        clip, tmp_path / "joined.mkv", asked, tmp_path / "work", load_upsampler(asked), count=2
    )
    assert len(segments.segments) > 1 and frames == 90
    whole_times, reference = video_frames(tmp_path / "whole.mkv")
    joined_times, made = video_frames(tmp_path / "joined.mkv")
    assert joined_times == whole_times and np.array_equal(made, reference)
    assert audio_span(tmp_path / "joined.mkv")[1] == pytest.approx(seconds, abs=0.05)


def test_slow_motion_bounds():
    info = VideoInfo(64, 48, Fraction(20), 20, 1.0, 0.0, 0, "h264", "yuv420p", 8)
    assert plan_output(info, UpsampleRequest(slowmo=16)).frames == 320
    for bad in (0, 17, 2.5):
        with pytest.raises(ParameterError, match="slowmo must be a whole number from 1 to 16"):
            plan_output(info, UpsampleRequest(slowmo=bad))  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="slowmo_audio must be one of drop, keep"):
        plan_output(info, UpsampleRequest(slowmo=2, slowmo_audio="stretch"))
    assert tempo_chain(8) == [0.5, 0.5, 0.5] and tempo_chain(3) == pytest.approx([0.5, 2 / 3])
    assert tempo_chain(1) == []
