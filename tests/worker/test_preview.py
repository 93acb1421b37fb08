"""Previews: the one frame ``render_preview`` makes is the frame the whole job makes at that time."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from service.cli import main
from tests.media import texture_frames, video_frames, write_clip
from worker.errors import InputError
from worker.media import OutputOptions
from worker.pipeline import run_upsample
from worker.planning import UpsampleRequest
from worker.preview import png_bytes, render_preview


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    """40 frames at 20 fps with a scene cut after frame 24 and a keyframe every 8 frames (seeks land mid-clip)."""
    scene_a = texture_frames(25, 48, 64, seed=1, velocity=(1.5, 0.5))
    scene_b = 255 - texture_frames(15, 48, 64, seed=2)
    frames = np.concatenate([scene_a, scene_b])
    return write_clip(tmp_path_factory.mktemp("preview") / "cut.mp4", frames, fps=20, keyframe_every=8)


def test_preview_is_the_jobs_frame(tmp_path, cut_clip, tiny_model_path):
    request = UpsampleRequest(scale=2.5, time_factor=3, model=str(tiny_model_path), device="cpu")
    out = tmp_path / "out.mkv"
    lossless = UpsampleRequest(**{**request.__dict__, "output": OutputOptions(codec="ffv1")})
    run_upsample(cut_clip, out, lossless)
    times, frames = video_frames(out)
    # the start, mid-pair (on and off the output grid), both sides of the cut, past the last input frame
    for at in (0.0, 0.2, 0.51, 1.22, 1.26, 1.93, 99.0):
        shot = render_preview(cut_clip, request, at)
        index = min(round(at * 60), len(frames) - 1)
        assert shot.index == index and abs(shot.time - times[index]) < 1e-3, (at, shot.index, shot.time)
        made = (shot.image * 255 + 0.5).astype(np.uint8)
        assert made.shape == frames[index].shape
        difference = np.abs(made.astype(int) - frames[index].astype(int)).max()
        assert difference <= 1, f"at {at} s: the preview differs from the job's frame {index} by {difference}/255"


def test_bicubic_comparison_and_png(cut_clip, tiny_model_path):
    shot = render_preview(cut_clip, UpsampleRequest(scale=3.5, model=str(tiny_model_path), device="cpu"), 0.5)
    bicubic = shot.bicubic()
    assert bicubic.shape == shot.image.shape == (168, 224, 3) and 0 <= bicubic.min() and bicubic.max() <= 1
    with av.open(io.BytesIO(png_bytes(bicubic)), format="png_pipe") as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(decoded.astype(int) - (bicubic * 255 + 0.5).astype(int)).max() == 0


def test_preview_refuses_what_the_job_refuses(cut_clip, tiny_model_path):
    with pytest.raises(InputError, match="too big"):
        render_preview(
            cut_clip, UpsampleRequest(scale=2, model=str(tiny_model_path)), 0.0, limit=lambda info, plan: "too big"
        )
    with pytest.raises(InputError, match="finite"):
        render_preview(cut_clip, UpsampleRequest(scale=2, model=str(tiny_model_path)), float("nan"))


def test_cli_preview(tmp_path, cut_clip, tiny_model_path, capsys):
    out = tmp_path / "frame.png"
    args = ["upsample", str(cut_clip), "-o", str(out), "--scale", "2", "--model", str(tiny_model_path)]
    assert main([*args, "--preview", "1.0", "--compare", "bicubic", "--device", "cpu"]) == 0
    assert "output frame 21 of 40" in capsys.readouterr().out  # counted from 1, as the page counts (index 20)
    for path in (out, tmp_path / "frame.bicubic.png"):
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            assert (frame.width, frame.height) == (128, 96)
    assert main([*args, "--preview", "1.0"]) == 5  # OutputError: exists, no --overwrite
    assert main(["upsample", str(cut_clip), "-o", str(tmp_path / "x.mp4"), "--preview", "1"]) == 2  # not a PNG
    assert not (tmp_path / "x.mp4").exists()
