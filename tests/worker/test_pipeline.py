"""The upsample pipeline end to end on generated files, with a tiny random model."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tests.media import audio_span, texture_frames, video_frames, write_clip
from worker.errors import ParameterError
from worker.media import EncodeOptions, VideoReader
from worker.pipeline import UpsampleRequest, plan_output, run_upsample


def request(model, **kwargs) -> UpsampleRequest:
    kwargs.setdefault("encode", EncodeOptions(preset="ultrafast"))
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
    run_upsample(clip, out, request(tiny_model_path, time_factor=4, encode=EncodeOptions(codec="ffv1")))
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
    run_upsample(clip, out, request(tiny_model_path, scale=2, encode=EncodeOptions(codec="hevc", preset="ultrafast")))
    with VideoReader(out) as reader:
        assert reader.info.bit_depth == 10 and reader.info.pix_fmt == "yuv420p10le"
    with pytest.raises(ParameterError, match="libx265 needs"):  # tiny HEVC corrupts x265's heap: refused
        run_upsample(clip, tmp_path / "small.mp4", request(tiny_model_path, encode=EncodeOptions(codec="hevc")))


def test_plan_rejects_bad_parameters(clip_with_audio):
    with VideoReader(clip_with_audio) as reader:
        info = reader.info
    for bad in ({"scale": 0.5}, {"scale": 20}, {"fps": -1}, {"fps": 30, "time_factor": 2}, {"width": -4}):
        with pytest.raises(ParameterError):
            plan_output(info, UpsampleRequest(**bad))
    plan = plan_output(info, UpsampleRequest(width=101))
    assert (plan.width, plan.height) == (102, 76)  # 48 * 101 / 64 = 75.75 -> 76, width made even
