"""``vinr`` on the command line: outputs, exit codes, one-line errors, no half-written files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from service.cli import main
from tests.media import audio_only, audio_span, texture_frames, write_clip

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_upsample_writes_the_requested_video(tmp_path, capsys, clip_with_audio, tiny_model_path):
    out = tmp_path / "out.mp4"
    code, stdout, _ = run(
        capsys,
        "upsample",
        clip_with_audio,
        "-o",
        out,
        "--scale",
        1.5,
        "--time-factor",
        2,
        "--model",
        tiny_model_path,
        "--device",
        "cpu",
        "--preset",
        "ultrafast",
        "--quiet",
    )
    assert code == 0 and stdout == ""
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (96, 72)
        assert sum(1 for _ in container.decode(video)) == 60
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_input_fails_cleanly(tmp_path, capsys, clip_with_audio, tiny_model_path, damage):
    data = clip_with_audio.read_bytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\xde\xad" * 2000 if damage == "garbage" else data[: len(data) // 3])
    out = tmp_path / "out.mp4"
    code, _, err = run(capsys, "upsample", bad, "-o", out, "--model", tiny_model_path, "--quiet")
    assert code == 3
    assert err.startswith("vinr: error: VideoReader:") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_exit_codes(tmp_path, capsys, clip_with_audio, tiny_model_path):
    common = ["--model", tiny_model_path, "--quiet"]
    assert run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "a.mp4", "--scale", 0.2, *common)[0] == 2
    assert run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "a.mp4", "--fps", 0, *common)[0] == 2
    assert run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "a.mp4", "--model", "nope", "--quiet")[0] == 2
    code, _, err = run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "a.mp4", "--encoder", "nvenc", *common)
    assert code == 2 and "NVENC was asked for, but h264_nvenc does not open" in err  # no GPU here: never a fallback
    assert run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "no" / "a.mp4", *common)[0] == 5
    assert run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "a.txt", *common)[0] == 5
    assert run(capsys, "upsample", tmp_path / "missing.mp4", "-o", tmp_path / "a.mp4", *common)[0] == 3
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    assert run(capsys, "upsample", clip_with_audio, "-o", existing, *common)[0] == 5
    assert existing.read_bytes() == b"keep me"
    tone = audio_only(clip_with_audio, tmp_path / "tone.m4a")
    code, _, err = run(capsys, "upsample", tone, "-o", tmp_path / "a.mp4", *common)
    assert code == 4 and "no video stream" in err
    assert not (tmp_path / "a.mp4").exists()


def test_info_prints_the_header(capsys, clip_with_audio):
    code, out, _ = run(capsys, "info", clip_with_audio)
    assert code == 0
    assert "width: 64" in out and "height: 48" in out and "audio: aac" in out


def test_readme_command_on_the_bundled_sample(tmp_path):
    """The README's first command, with the shipped checkpoint, as a real process."""
    out = tmp_path / "bikes_2x.mp4"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "upsample",
            str(ROOT / "samples" / "bikes.mp4"),
            "-o",
            str(out),
            "--scale",
            "2",
            "--time-factor",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (400, 168)
        assert sum(1 for _ in container.decode(video)) == 100
        assert len(container.streams.audio) == 1


def test_encode_info_decode_commands(tmp_path, capsys):
    from tests.media import texture_frames, write_clip

    clip = write_clip(tmp_path / "in.mp4", texture_frames(12, 64, 80), pix_fmt="yuv444p")
    stream = tmp_path / "clip.nrff"
    code, out, _ = run(capsys, "encode", clip, "-o", stream, "--bpp", 0.5, "--steps", 60, "--device", "cpu")
    assert code == 0 and "bpp" in out and stream.is_file()
    code, out, _ = run(capsys, "info", stream)
    assert code == 0 and "codec: nrff" in out and "frames: 12" in out and "section WGTS" in out
    video = tmp_path / "out.mkv"
    code, _, _ = run(capsys, "decode", stream, "-o", video, "--frames", "2:6", "--codec", "ffv1", "--quiet")
    assert code == 0
    with av.open(str(video)) as container:
        frames = [f for f in container.decode(video=0)]
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (80, 64)
    bad = tmp_path / "bad.nrff"
    bad.write_bytes(stream.read_bytes()[:-10])
    code, _, err = run(capsys, "decode", bad, "-o", tmp_path / "bad.mp4", "--quiet")
    assert code == 3 and ("truncated" in err or "claims" in err)
    assert not (tmp_path / "bad.mp4").exists()
    assert run(capsys, "decode", stream, "-o", tmp_path / "r.mp4", "--frames", "9:40", "--quiet")[0] == 2


def test_encode_gives_nrff_the_residual_share_asked_for(tmp_path, capsys):
    from tests.media import texture_frames, write_clip

    clip = write_clip(tmp_path / "in.mp4", texture_frames(12, 64, 80), pix_fmt="yuv444p")
    stream = tmp_path / "clip.nrff"
    args = ["encode", clip, "-o", stream, "--bpp", 1.5, "--steps", 500, "--minutes", 5, "--device", "cpu", "--quiet"]
    assert run(capsys, *args)[0] == 0
    assert "section RESD" not in run(capsys, "info", stream)[1]  # the rule's 30% is below the residual's minimum
    assert run(capsys, *args, "--overwrite", "--residual-share", 0.5)[0] == 0
    assert "section RESD" in run(capsys, "info", stream)[1]
    for bad in (("--residual-share", 1.5), ("--residual-share", 0.3, "--codec", "dnerv")):
        code, _, err = run(capsys, *args, "--overwrite", *bad)
        assert code == 2 and "residual share" in err


def test_dnerv_library_commands(tmp_path, capsys):
    from tests.media import texture_frames, write_clip

    folder = tmp_path / "library"
    folder.mkdir()
    write_clip(folder / "v0.mp4", texture_frames(10, 64, 64, seed=0), pix_fmt="yuv444p")
    write_clip(folder / "v1.mp4", texture_frames(10, 66, 48, seed=1), pix_fmt="yuv444p")  # videos of other sizes
    library = tmp_path / "lib.dnerv"
    code, out, _ = run(
        capsys,
        "encode",
        folder,
        "-o",
        library,
        "--codec",
        "dnerv",
        "--bpp",
        1.0,
        "--steps",
        20,
        "--device",
        "cpu",
        "--quiet",
    )
    assert code == 0 and library.is_file()
    code, out, _ = run(capsys, "info", library)
    assert "codec: dnerv" in out and "video 0: v0 (64x64, 10 frames" in out and "video 1: v1 (48x66, 10" in out
    assert "width: 64" in out and "height: 66" in out  # the header holds the largest size
    assert "keyframes: every 2 frames" in out  # at 1 bpp the rule puts keyframes 2 apart
    video = tmp_path / "v1.mp4"
    assert run(capsys, "decode", library, "-o", video, "--video", "v1", "--frames", "0:5", "--quiet")[0] == 0
    with av.open(str(video)) as container:
        frames = list(container.decode(video=0))
        assert len(frames) == 5 and (frames[0].width, frames[0].height) == (48, 66)
    assert run(capsys, "decode", library, "-o", tmp_path / "x.mp4", "--video", "v7", "--quiet")[0] == 2


def test_version_info_and_a_closed_pipe(tmp_path):
    """``vinr --version``; ``vinr info`` reads as a person would; output into a pipe nobody reads is no traceback."""
    done = subprocess.run([sys.executable, "-m", "service.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("vinr ")
    clip = write_clip(tmp_path / "in.mp4", texture_frames(6, 48, 64), fps=Fraction(30000, 1001))
    done = subprocess.run([sys.executable, "-m", "service.cli", "info", clip], capture_output=True, text=True)
    assert "fps: 29.97 (30000/1001)" in done.stdout and "audio: none" in done.stdout, done.stdout
    read, write = os.pipe()
    os.close(read)  # every write to the pipe fails with EPIPE
    with os.fdopen(write, "wb") as sink:
        done = subprocess.run([sys.executable, "-m", "service.cli", "info", clip], stdout=sink, stderr=subprocess.PIPE)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr


def test_preview_counts_frames_from_one_and_ffv1_needs_mkv(tmp_path, capsys, clip_with_audio, tiny_model_path):
    code, out, _ = run(
        capsys, "upsample", clip_with_audio, "-o", tmp_path / "f.png", "--preview", 0, "--model", tiny_model_path
    )
    assert code == 0 and "output frame 1 of " in out
    code, _, err = run(capsys, "upsample", clip_with_audio, "-o", tmp_path / "x.mp4", "--codec", "ffv1")
    assert code == 2 and "name the output .mkv" in err and not (tmp_path / "x.mp4").exists()


def test_slowmo_on_the_bundled_sample(tmp_path, capsys, tiny_model_path):
    """``--slowmo 4``: 4x the frames at the input's 25 fps, 4x the duration; the audio dropped, or kept slowed."""
    sample = ROOT / "samples" / "bikes.mp4"
    for audio, out in (("drop", tmp_path / "slow.mp4"), ("keep", tmp_path / "slow-audio.mp4")):
        code, stdout, _ = run(
            capsys, "upsample", sample, "-o", out, "--slowmo", 4, "--slowmo-audio", audio,
            "--model", tiny_model_path, "--preset", "ultrafast",
        )  # fmt: skip
        assert code == 0 and "200x84 at 25 fps, 200 frames" in stdout
        with av.open(str(out)) as container:
            video = container.streams.video[0]
            assert video.average_rate == 25 and sum(1 for _ in container.decode(video)) == 200
            assert float(container.duration / 1e6) == pytest.approx(8.0, abs=0.05)
            assert len(container.streams.audio) == (audio == "keep")
        if audio == "keep":
            assert audio_span(out)[1] == pytest.approx(8.0, abs=0.1)  # the sample's 2 s of sound, 4x slower
    code, _, err = run(capsys, "upsample", sample, "-o", tmp_path / "x.mp4", "--slowmo", 20)
    assert code == 2 and "slowmo must be a whole number from 1 to 16, got 20" in err


def test_adapt_on_the_bundled_sample_reports_the_held_out_gain(tmp_path, capsys):
    """``--adapt SECONDS`` with the served model: it learns the sample first, says how that went on held-out
    windows, and renders; a video too small to learn from renders with the served weights and says why."""
    sample = ROOT / "samples" / "bikes.mp4"
    out = tmp_path / "adapted.mp4"
    started = time.monotonic()
    code, stdout, _ = run(
        capsys, "upsample", sample, "-o", out, "--scale", 2, "--time-factor", 2, "--adapt", 3, "--preset", "ultrafast"
    )
    assert code == 0 and re.search(r"adapted for [0-9.]+ s \(\d+ steps\): held-out [+-]\d+\.\d\d dB", stdout), stdout
    assert time.monotonic() - started < 60
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 100  # 2 s at 50 fps
    small = write_clip(tmp_path / "small.mp4", texture_frames(12, 24, 32))
    code, stdout, _ = run(
        capsys, "upsample", small, "-o", tmp_path / "s.mp4", "--scale", 2, "--adapt", 2, "--preset", "ultrafast"
    )
    assert code == 0 and "not adapted: frames of 32x24 are too small to learn a 2x upsample from" in stdout, stdout
    code, _, err = run(capsys, "upsample", sample, "-o", tmp_path / "x.mp4", "--adapt", -1)
    assert code == 2 and "--adapt takes" in err
