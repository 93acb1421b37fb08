"""The upsample pipeline end to end on generated files, with a tiny random model."""

from __future__ import annotations

import threading

import av
import numpy as np
import pytest
import torch

from tests.media import audio_span, texture_frames, video_frames, write_clip
from tests.processes import open_files_under
from worker.errors import CanceledError, OutputError, ParameterError
from worker.jobs import upsample_request
from worker.media import OutputOptions, VideoReader
from worker.pipeline import load_upsampler, run_upsample
from worker.planning import UpsampleRequest, plan_output
from worker.render import render_streams
from worker.runtime import choose_dtype, native_bf16
from worker.settings import WorkerSettings


def request(model, **kwargs) -> UpsampleRequest:
    kwargs.setdefault("output", OutputOptions(preset="ultrafast"))
    return UpsampleRequest(model=str(model), device="cpu", **kwargs)


def probe(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = [s.codec_context.name for s in container.streams.audio]
        return video.codec_context.width, video.codec_context.height, audio


def test_mp4_with_audio(tmp_path, clip_with_audio, tiny_model_path):
    out = tmp_path / "out.mp4"
    result = run_upsample(clip_with_audio, out, request(tiny_model_path, scale=2, fps=60))
    times, frames = video_frames(out)
    assert frames.shape == (60, 96, 128, 3) and result.frames == 60
    assert np.allclose(np.diff(times), 1 / 60, atol=1e-4)
    assert abs(times[-1] + 1 / 60 - 1.0) <= 1 / 60  # same duration as the input, within a frame
    assert probe(out)[2] == ["aac"]
    start_in, length_in = audio_span(clip_with_audio)
    start_out, length_out = audio_span(out)
    assert abs(length_out - length_in) < 1e-3  # copied, not re-encoded: same packets, same length
    assert abs((start_out - times[0]) - (start_in - 0.0)) < 1 / 60
    with av.open(str(clip_with_audio)) as a, av.open(str(out)) as b:
        packets_in = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
        packets_out = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size]
    assert packets_in == packets_out


def test_audio_the_muxer_refuses_is_transcoded(tmp_path, clip_with_audio, tiny_model_path):
    out = tmp_path / "out.webm"  # WebM takes Opus or Vorbis, not the input's AAC
    run_upsample(clip_with_audio, out, request(tiny_model_path, scale=2, output=OutputOptions(codec="vp9")))
    assert probe(out)[2] == ["opus"]
    start_in, length_in = audio_span(clip_with_audio)
    start_out, length_out = audio_span(out)
    assert abs(length_out - length_in) < 0.05 and abs(start_out - start_in) < 0.05  # the whole tone, in sync
    with av.open(str(out)) as container:
        samples = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert np.abs(samples).max() > 0.1  # sound, not silence


def test_vfr_odd_size_mkv(tmp_path, vfr_odd_mkv, tiny_model_path):
    out = tmp_path / "out.mkv"
    run_upsample(vfr_odd_mkv, out, request(tiny_model_path, scale=1.7, fps=30))
    with av.open(str(vfr_odd_mkv)) as container:
        decoded = list(container.decode(video=0))
    source = [float(f.time) for f in decoded]
    times, frames = video_frames(out)
    assert frames.shape[1:3] == (166, 298)  # 97*1.7 = 164.9 -> 165 -> even 166; 175*1.7 = 297.5 -> 298
    duration_in = source[-1] + float(decoded[-1].duration * decoded[-1].time_base) - source[0]
    assert abs(len(times) / 30 - duration_in) <= 1 / 30
    assert np.allclose(np.diff(times), 1 / 30, atol=2e-3)
    start_in, length_in = audio_span(vfr_odd_mkv)
    start_out, length_out = audio_span(out)
    assert abs(length_out - length_in) < 0.03
    assert abs((start_out - times[0]) - (start_in - source[0])) < 1 / 30


def test_no_ghost_frame_at_a_scene_cut(tmp_path, tiny_model_path):
    scene_a = texture_frames(6, 48, 64, seed=1)
    scene_b = 255 - texture_frames(6, 48, 64, seed=2)
    clip = write_clip(tmp_path / "cut.mp4", np.concatenate([scene_a, scene_b]), pix_fmt="yuv444p")
    out = tmp_path / "out.mkv"
    run_upsample(clip, out, request(tiny_model_path, time_factor=4, output=OutputOptions(codec="ffv1")))
    _, frames = video_frames(out)
    frames = frames.astype(np.float32)
    assert len(frames) == 48
    last_a, first_b = frames[20], frames[24]  # input frames 5 and 6
    for index in (21, 22, 23):  # the output times between them
        nearest = min(np.abs(frames[index] - last_a).mean(), np.abs(frames[index] - first_b).mean())
        assert nearest < 1.0, f"frame {index} is a blend across the cut"
    assert np.abs(frames[10] - frames[8]).mean() > 1.0  # inside a scene, frames do move


def test_rotated_input_comes_out_upright(tmp_path, tiny_model_path):
    clip = write_clip(tmp_path / "rot.mp4", texture_frames(4, 32, 48), rotation=90)
    out = tmp_path / "out.mp4"
    run_upsample(clip, out, request(tiny_model_path, scale=2))
    assert probe(out)[:2] == (64, 96)


def test_ten_bit_input_to_ten_bit_hevc(tmp_path, tiny_model_path):
    frames = texture_frames(4, 32, 48).astype(np.uint16) * 257
    clip = write_clip(tmp_path / "ten.mkv", frames, codec="ffv1", pix_fmt="yuv420p10le", high_bit_depth=True)
    out = tmp_path / "out.mp4"
    run_upsample(clip, out, request(tiny_model_path, scale=2, output=OutputOptions(codec="hevc", preset="ultrafast")))
    with VideoReader(out) as reader:
        assert reader.info.bit_depth == 10 and reader.info.pix_fmt == "yuv420p10le"
    with pytest.raises(ParameterError, match="libx265 needs"):  # tiny HEVC corrupts x265's heap: refused
        run_upsample(clip, tmp_path / "small.mp4", request(tiny_model_path, output=OutputOptions(codec="hevc")))


def test_plan_rejects_bad_parameters(clip_with_audio):
    with VideoReader(clip_with_audio) as reader:
        info = reader.info
    for bad in ({"scale": 0.5}, {"scale": 20}, {"fps": -1}, {"fps": 30, "time_factor": 2}, {"width": -4}):
        with pytest.raises(ParameterError):
            plan_output(info, UpsampleRequest(**bad))
    plan = plan_output(info, UpsampleRequest(width=101))
    assert (plan.width, plan.height) == (102, 76)  # 48 * 101 / 64 = 75.75 -> 76, width made even


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"fps": 5000}, r"got 5000$"),  # the value asked for, not a clamped one
        ({"fps": 100000}, r"got 100000$"),
        ({"time_factor": 100}, r"time factor 100 makes 3000 fps from 30"),
        ({"scale": 2, "width": 300}, "a scale or a width/height, not both"),
        ({"width": 3}, r"3x2 is smaller than the input \(64x48\)"),
    ],
)
def test_plan_says_what_was_wrong(clip_with_audio, request_, message):
    with VideoReader(clip_with_audio) as reader:
        info = reader.info
    with pytest.raises(ParameterError, match=message):
        plan_output(info, UpsampleRequest(**request_))


def run_with_deadline(seconds: float, function, *args, **kwargs):
    """Run ``function`` in a thread; fail the test (instead of hanging it) if it outlives ``seconds``."""
    import threading

    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} still running after {seconds} s: the pipeline is wedged"
    return outcome


def test_a_dead_encoder_stops_the_pipeline_with_its_message(tmp_path, tiny_model_path):
    # the renderer fills the queue at 1000 fps while x264 dies on its first frame (a preset it lacks)
    clip = write_clip(tmp_path / "in.mp4", texture_frames(10, 16, 16))
    out = tmp_path / "out.mp4"
    encode = OutputOptions(preset="no-such-preset")
    for _ in range(3):
        outcome = run_with_deadline(60, run_upsample, clip, out, request(tiny_model_path, fps=1000, output=encode))
        assert isinstance(outcome.get("error"), OutputError), outcome
        assert "encoder failed" in str(outcome["error"]) and not out.exists()


def test_a_cancel_during_a_stalled_encoder_returns(tmp_path, clip_with_audio, tiny_model_path):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    outcome = run_with_deadline(
        60,
        run_upsample,
        clip_with_audio,
        tmp_path / "o.mp4",
        request(tiny_model_path, fps=200),
        should_stop=should_stop,
    )
    assert isinstance(outcome.get("error"), CanceledError), outcome


@pytest.mark.parametrize(
    ("codec", "size", "words"),
    [("av1", 2, "libsvtav1 needs at least 4x4"), ("hevc", 32, "libx265 needs at least 64x64")],
)
def test_plan_refuses_sizes_the_encoder_cannot_take(tmp_path, codec, size, words):
    clip = write_clip(tmp_path / "small.mkv", texture_frames(3, size, size), codec="libx264", pix_fmt="yuv444p")
    with VideoReader(clip) as reader, pytest.raises(ParameterError, match=words):
        plan_output(reader.info, UpsampleRequest(fps=1000, output=OutputOptions(codec=codec)))


@pytest.mark.parametrize("field", ["fps", "time_factor", "scale"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e308, -1.0])
def test_plan_refuses_non_finite_and_huge_rates(clip_with_audio, field, value):
    with VideoReader(clip_with_audio) as reader, pytest.raises(ParameterError):
        plan_output(reader.info, UpsampleRequest(**{field: value}))


def test_plan_refuses_huge_integer_sizes(clip_with_audio):
    with VideoReader(clip_with_audio) as reader, pytest.raises(ParameterError, match="width and height"):
        plan_output(reader.info, UpsampleRequest(width=10**400))


def test_a_canceled_run_releases_its_input(tmp_path, clip_with_audio, tiny_model_path):
    import shutil

    source = tmp_path / "job" / "input"
    source.parent.mkdir()
    shutil.copy(clip_with_audio, source)
    with pytest.raises(CanceledError):
        run_upsample(source, tmp_path / "job" / "r.mp4", request(tiny_model_path, fps=60), should_stop=lambda: True)
    source.unlink()
    assert open_files_under(tmp_path / "job") == []


def test_pairs_rendered_side_by_side_give_the_same_frames_in_order(tmp_path, tiny_model_path, monkeypatch):
    """Two render streams (the CPU default) make exactly what one makes, in order, cuts included."""
    scene_a = texture_frames(7, 48, 64, seed=1)
    scene_b = 255 - texture_frames(6, 48, 64, seed=2)
    clip = write_clip(tmp_path / "cut.mp4", np.concatenate([scene_a, scene_b]), pix_fmt="yuv444p")
    results = {}
    for streams in ("1", "2", "3"):
        monkeypatch.setenv("VINR_RENDER_STREAMS", streams)
        out = tmp_path / f"out{streams}.mkv"
        run_upsample(clip, out, request(tiny_model_path, time_factor=3, output=OutputOptions(codec="ffv1")))
        results[streams] = video_frames(out)
    assert len(results["1"][1]) == 39
    for streams in ("2", "3"):
        assert results[streams][0] == results["1"][0]
        assert np.array_equal(results[streams][1], results["1"][1])


def test_render_threads_split_the_torch_threads_and_the_caller_keeps_its_own(
    tmp_path, clip_with_audio, tiny_model_path, monkeypatch
):
    """On 2 CPU threads: three pairs render at once with one torch thread each (the caller's thread too while
    it encodes frames), and the caller gets its 2 threads back at the end."""
    monkeypatch.delenv("VINR_RENDER_STREAMS", raising=False)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        upsampler = load_upsampler(request(tiny_model_path))
        assert render_streams(upsampler) == (3, 1)
        seen, render = [], upsampler.render_frames

        def recording_render(*args, **kwargs):  # the real render, noting the thread and its torch threads
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return render(*args, **kwargs)

        upsampler.render_frames = recording_render
        run_upsample(clip_with_audio, tmp_path / "out.mp4", request(tiny_model_path), upsampler=upsampler)
        assert len(seen) > 3
        assert all(name.startswith("vinr-render") and threads == 1 for name, threads in seen)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(8)
        assert render_streams(upsampler) == (4, 2)
        monkeypatch.setenv("VINR_RENDER_STREAMS", "2")
        assert render_streams(upsampler) == (2, 4)
        monkeypatch.setenv("VINR_RENDER_STREAMS", "1")
        assert render_streams(upsampler) == (1, 8)
        monkeypatch.delenv("VINR_RENDER_STREAMS")
        torch.set_num_threads(1)
        assert render_streams(upsampler) == (1, 1)
    finally:
        torch.set_num_threads(saved)


def test_a_bad_render_stream_count_is_refused(tmp_path, clip_with_audio, tiny_model_path, monkeypatch):
    monkeypatch.setenv("VINR_RENDER_STREAMS", "two")
    with pytest.raises(ParameterError, match="VINR_RENDER_STREAMS"):
        run_upsample(clip_with_audio, tmp_path / "out.mp4", request(tiny_model_path))


def test_bf16_on_a_cpu_is_used_only_where_the_cpu_has_it(tmp_path, clip_with_audio, tiny_model_path, monkeypatch):
    """``--bf16`` on a CPU runs the convolutional stages in bfloat16 where the CPU does bfloat16 in
    hardware, else float32 (emulated bfloat16 is several times slower); ``--half`` stays CUDA-only. ONNX
    Runtime has no bfloat16 path: it runs float32. Workers and previews take it from ``VINR_BF16``."""
    cpu = torch.device("cpu")
    assert choose_dtype(cpu, half=False, bf16=True) == (torch.bfloat16 if native_bf16() else torch.float32)
    assert choose_dtype(cpu, half=True) == torch.float32
    upsampler = load_upsampler(request(tiny_model_path, scale=2, bf16=True))
    assert upsampler.autocast == (torch.bfloat16 if native_bf16() else None) and upsampler.query_autocast is None
    result = run_upsample(clip_with_audio, tmp_path / "out.mp4", request(tiny_model_path, scale=2, bf16=True))
    assert result.frames == video_frames(tmp_path / "out.mp4")[1].shape[0] > 0
    onnx = load_upsampler(request(tiny_model_path, scale=2, bf16=True, backend="onnx"))
    assert onnx.dtype == torch.float32 and onnx.autocast is None
    monkeypatch.setenv("VINR_BF16", "1")
    assert upsample_request({"scale": 2}, "cpu", "torch", WorkerSettings().bf16).bf16 is True
