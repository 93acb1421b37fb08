"""Segmented runs: cut at input frames, rendered apart, joined without re-encoding, equal to one run."""

from __future__ import annotations

import numpy as np
import pytest

from service.cli import main
from tests.media import audio_span, texture_frames, video_frames, write_clip
from worker.errors import CanceledError
from worker.media import OutputOptions
from worker.pipeline import load_upsampler, run_upsample
from worker.planning import UpsampleRequest
from worker.segments import PLAN, SegmentPlan, frame_times, plan_segments, run_segmented


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    """3 s at 30 fps with audio, a scene cut at 1.67 s and a keyframe every 12 frames."""
    frames = np.concatenate(
        [texture_frames(50, 48, 64, seed=1, velocity=(1.5, 0.5)), 255 - texture_frames(40, 48, 64, seed=2)]
    )
    return write_clip(tmp_path_factory.mktemp("segments") / "cut.mp4", frames, audio=True, keyframe_every=12)


def request(model, codec: str, **kwargs) -> UpsampleRequest:
    output = OutputOptions(codec=codec, preset="ultrafast" if codec == "h264" else None)
    return UpsampleRequest(scale=1.5, time_factor=2.5, model=str(model), device="cpu", output=output, **kwargs)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_plan_cuts_at_keyframes_and_counts_every_frame():
    times = [i / 30 for i in range(300)]
    keys = {times[i] for i in range(0, 300, 12)}
    plan = plan_segments(times, keys, fps=60, total=600, length=2.0)
    begins = [s.begin for s in plan.segments]
    assert all(b in keys for b in begins) and len(plan.segments) == 5, begins
    assert [s.first for s in plan.segments] == [round(b * 60) for b in begins]
    assert sum(s.frames for s in plan.segments) == 600 and plan.segments[-1].end is None
    assert all(a.end == b.begin for a, b in zip(plan.segments, plan.segments[1:]))


def test_segments_equal_one_run(tmp_path, cut_clip, tiny_model_path):
    """ffv1: the same frames bit for bit, and the same timestamps, across a scene cut; h264: the same
    quality within 0.1 dB (the segments' GOPs differ from one run's)."""
    whole, joined = tmp_path / "whole.mkv", tmp_path / "joined.mkv"
    run_upsample(cut_clip, whole, request(tiny_model_path, "ffv1"))
    lossless = request(tiny_model_path, "ffv1")
    _, segments, frames = run_segmented(
        cut_clip, joined, lossless, tmp_path / "work", load_upsampler(lossless), count=4
    )
    assert len(segments.segments) == 4 and frames == 225
    whole_times, reference = video_frames(whole)
    joined_times, made = video_frames(joined)
    assert joined_times == whole_times and np.array_equal(made, reference)
    assert audio_span(joined) == pytest.approx(audio_span(whole), abs=0.03)

    compressed = request(tiny_model_path, "h264")
    run_upsample(cut_clip, tmp_path / "whole.mp4", compressed)
    run_segmented(
        cut_clip, tmp_path / "joined.mp4", compressed, tmp_path / "work264", load_upsampler(compressed), count=4
    )
    whole_times, whole_h264 = video_frames(tmp_path / "whole.mp4")
    joined_times, joined_h264 = video_frames(tmp_path / "joined.mp4")
    assert np.allclose(joined_times, whole_times, atol=1e-6)
    assert abs(psnr(joined_h264, reference) - psnr(whole_h264, reference)) < 0.1


def test_resume_makes_only_the_missing_segments(tmp_path, cut_clip, tiny_model_path):
    lossless = request(tiny_model_path, "ffv1")
    upsampler, work = load_upsampler(lossless), tmp_path / "work"
    reports = []

    def stop_in_third() -> bool:
        return bool(reports) and reports[-1][0] > 130  # within the third segment (frames 112 to 169)

    def record(done: int, total: int) -> None:
        reports.append((done, total))

    def run(**kwargs):
        return run_segmented(
            cut_clip, tmp_path / "a.mkv", lossless, work, upsampler, count=4, progress=record, **kwargs
        )

    with pytest.raises(CanceledError):
        run(should_stop=stop_in_third)
    kept = sorted(work.glob("segments/*.mkv"))
    assert [p.name for p in kept] == ["0000.mkv", "0001.mkv"]
    stamps = [p.stat().st_mtime_ns for p in kept]
    reports.clear()
    _, segments, frames = run(resume=True)
    done_before = sum(s.frames for s in segments.segments[:2])
    assert frames == 225 and reports[0][0] > done_before, reports[:3]  # counting on from the kept segments
    assert [p.stat().st_mtime_ns for p in kept] == stamps, "a finished segment was made again"
    assert SegmentPlan.load(work).key == segments.key and (work / PLAN).exists()


def test_cli_segments_and_resume(tmp_path, cut_clip, tiny_model_path, capsys):
    out = tmp_path / "out.mp4"
    args = ["upsample", str(cut_clip), "-o", str(out), "--scale", "1.5", "--model", str(tiny_model_path), "--quiet"]
    assert main([*args, "--segments", "3"]) == 0
    assert not (tmp_path / ".out.mp4.segments").exists() and len(video_frames(out)[0]) == 90
    work = tmp_path / ".again.mp4.segments"
    work.mkdir()
    again = [*args[:3], str(tmp_path / "again.mp4"), *args[4:]]
    assert main([*again, "--segments", "3"]) == 5  # an earlier run's work folder: --resume or remove it
    assert "--resume" in capsys.readouterr().err
    assert main([*again, "--segments", "3", "--resume"]) == 0 and not work.exists()
    assert main([*again, "--resume", "--overwrite"]) == 2  # --resume needs --segments


def test_frame_times_reads_packets(cut_clip):
    times, keys = frame_times(cut_clip)
    assert len(times) == 90 and times[0] == 0.0 and {0.0, 12 / 30, 24 / 30} <= keys
