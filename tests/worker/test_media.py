"""VideoReader and VideoWriter on real files made with PyAV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from tests.media import audio_only, texture_frames, video_frames, write_clip
from worker.errors import InputError, NoVideoStreamError, ParameterError
from worker.media import OutputOptions, VideoReader, VideoWriter, even_size

ORANGE = np.array([230, 120, 40], dtype=np.uint8)


def flat(count, height, width, colour=ORANGE):
    return np.broadcast_to(colour, (count, height, width, 3)).copy()


@pytest.mark.parametrize("colorspace", [1, 5])  # BT.709, BT.601
def test_reader_uses_the_input_colour_matrix(tmp_path, colorspace):
    path = write_clip(tmp_path / "c.mp4", flat(3, 64, 64), colorspace=colorspace, pix_fmt="yuv444p")
    with VideoReader(path) as reader:
        frame = next(reader.frames())
    assert np.abs(frame.image[32, 32] * 255 - ORANGE).max() < 3


def test_reader_honours_rotation(tmp_path):
    frames = texture_frames(3, 32, 48)
    path = write_clip(tmp_path / "r.mp4", frames, rotation=90, pix_fmt="yuv444p")
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height, reader.info.rotation) == (32, 48, 90)
        image = next(reader.frames()).image
    expected = np.rot90(frames[0], 1).astype(np.float32) / 255
    wrong = np.rot90(frames[0], -1).astype(np.float32) / 255
    assert np.abs(image - expected).mean() < 0.2 * np.abs(image - wrong).mean()


def test_reader_keeps_ten_bit_precision(tmp_path):
    ramp = np.linspace(0, 65535 * 0.25, 256 * 8).astype(np.uint16)[None, : 256 * 8]
    frames = np.broadcast_to(ramp[..., None], (2, 16, ramp.shape[1], 3)).copy()
    path = write_clip(tmp_path / "ten.mkv", frames, codec="ffv1", pix_fmt="yuv444p10le", high_bit_depth=True)
    with VideoReader(path) as reader:
        assert reader.info.bit_depth == 10
        image = next(reader.frames()).image
    levels = np.unique(np.round(image[8, :, 1] * 1023))
    assert len(levels) > 200  # a quarter of the range: 256 ten-bit levels vs 64 eight-bit ones


def test_reader_gives_true_variable_timestamps(vfr_odd_mkv):
    with VideoReader(vfr_odd_mkv) as reader:
        times = [f.time for f in reader.frames()]
        assert (reader.info.width, reader.info.height) == (175, 97)
    steps = np.round(np.diff(times), 3)
    assert set(steps) == {0.033, 0.067} or set(steps) == {0.033, 0.066, 0.067}


def test_reader_errors(tmp_path, clip_with_audio):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(InputError, match="cannot read"):
        VideoReader(garbage)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip_with_audio.read_bytes()[: clip_with_audio.stat().st_size // 2])
    with pytest.raises(InputError):
        with VideoReader(truncated) as reader:
            list(reader.frames())
    with pytest.raises(NoVideoStreamError):
        VideoReader(audio_only(clip_with_audio, tmp_path / "tone.m4a"))
    with pytest.raises(InputError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")


def test_even_sizes():
    assert even_size(175, 97, "yuv420p") == (176, 98)
    assert even_size(175, 97, "yuv422p") == (176, 97)
    assert even_size(175, 97, "yuv444p") == (175, 97)
    assert even_size(175, 97, "gbrp") == (175, 97)


@pytest.mark.parametrize(("height", "matrix"), [(720, 1), (96, 6)])  # BT.709, SMPTE 170M
def test_writer_tags_colour_by_size(tmp_path, height, matrix):
    width = height * 4 // 3
    with VideoWriter(tmp_path / "o.mp4", width, height, Fraction(30), OutputOptions(crf=30, preset="ultrafast")) as w:
        for i in range(2):
            w.write(np.full((height, width, 3), 0.5, dtype=np.float32), i / 30)
        path = w.close()
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert int(frame.colorspace) == matrix
        assert int(container.streams.video[0].codec_context.color_primaries) == matrix


def test_writer_refuses_odd_420_and_leaves_nothing_on_abort(tmp_path):
    with pytest.raises(ParameterError, match="even"):
        VideoWriter(tmp_path / "o.mp4", 175, 97, Fraction(30), OutputOptions())
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "o.mp4", 64, 48, Fraction(30), OutputOptions()) as w:
            w.write(np.zeros((48, 64, 3), np.float32), 0.0)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_ffv1_is_lossless_rgb(tmp_path):
    frames = texture_frames(3, 24, 33)
    with VideoWriter(tmp_path / "o.mkv", 33, 24, Fraction(30), OutputOptions(codec="ffv1")) as w:
        for i, f in enumerate(frames):
            w.write(f.astype(np.float32) / 255, i / 30)
        path = w.close()
    _, decoded = video_frames(path)
    assert np.array_equal(decoded, frames)


POLICIES_AFTER_AV1 = """
import io, os, sys
import json
import os
import subprocess
import sys
from fractions import Fraction
import av, numpy as np

def policies():
    return sorted({os.sched_getscheduler(int(tid)) for tid in os.listdir("/proc/self/task")})

frames = [np.full((16, 16, 3), 40 * i, np.uint8) for i in range(3)]
if sys.argv[1] == "raw":  # PyAV alone: what SVT-AV1 does to the process
    with av.open(io.BytesIO(), "w", format="ivf") as container:
        stream = container.add_stream("libsvtav1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        print(policies())
elif sys.argv[1] == "writer":
    from worker.media import OutputOptions, VideoWriter
    writer = VideoWriter(sys.argv[2], 16, 16, Fraction(25), OutputOptions(codec="av1"))
    for index, frame in enumerate(frames):
        writer.write(frame / 255.0, index / 25)
    print(policies())
    writer.close()
else:
    from models.bitstream import keyframes
    keyframes.encode(frames, codec="av1")
    print(policies())
"""


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="no POSIX scheduling policies here")
def test_av1_encoding_leaves_no_real_time_threads(tmp_path):
    """SVT-AV1 run as root puts its encoder threads and the opening thread at SCHED_FIFO 99; a worker
    started from such a thread then spins real-time (a CI run hung so). Our encoders move them back."""

    def policies(*args: str) -> list[int]:
        done = subprocess.run(
            [sys.executable, "-c", POLICIES_AFTER_AV1, *args], capture_output=True, text=True, timeout=120, check=True
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    if os.geteuid() == 0:  # the cause, as the bundled build behaves (it keeps to SCHED_OTHER otherwise)
        assert os.SCHED_FIFO in policies("raw")
    assert policies("writer", str(tmp_path / "out.mkv")) == [os.SCHED_OTHER]
    assert policies("keyframes") == [os.SCHED_OTHER]


def test_an_output_gets_the_mode_the_umask_gives(tmp_path):
    """Written under a private temporary name, the finished file is as readable as any new file here."""
    import stat

    from worker.media import process_umask

    saved = os.umask(0o022)
    try:
        assert process_umask() == 0o022
        path = tmp_path / "out.mp4"
        with VideoWriter(path, 32, 32, Fraction(25), OutputOptions()) as writer:
            writer.write(np.zeros((32, 32, 3), np.float32), 0.0)
            writer.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(saved)
