"""Keyframes as a short video in a codec that PyAV provides (HEVC via libx265, AV1 via SVT-AV1).

Payload: ``u8 codec (1 = HEVC, 2 = AV1) | u8 quality | u16 count | elementary stream`` (HEVC Annex B,
AV1 in IVF). Frames are padded (edge pixels repeated) to at least ``MIN_SIDE`` and to even sizes,
coded as 4:2:0 BT.709 limited range, and cropped back on decoding. The decoder must produce
exactly ``count`` frames of the expected size, or the payload is refused.

The first keyframe is intra-coded and the others are predicted from earlier keyframes (``inter=True``,
the default): on carphone's six keyframes at GOP 10, AV1 at CRF 30 took 7366 bytes for 35.11 dB
where intra-coding each one took 12470 bytes for 33.55 dB (docs/codec.md). Readers decode every
keyframe up front, so prediction costs no random access, and the layout is the same either way:
files whose keyframes are all intra-coded (``inter=False``, and every file written before inter
coding) decode as before.

AV1 (SVT-AV1) is the default: on carphone's keyframes it is slightly ahead of HEVC at equal bytes
(``python -m models.nrff.evaluate`` measures it; see docs/codec.md).
"""

from __future__ import annotations

import io
import os
import struct

import av
import numpy as np

from models.bitstream.container import BitstreamError
from models.scheduling import leave_realtime

KEYFRAME_CODECS = {1: ("libx265", "hevc", "hevc"), 2: ("libsvtav1", "ivf", "libdav1d")}
"""id -> (encoder, container format, decoder)."""
NAMES = {"hevc": 1, "av1": 2}
MIN_SIDE = 64
"""Smallest side coded, pixels (libx265 corrupts its heap below this in the bundled build)."""
HEADER = struct.Struct("<BBH")


def padded_size(width: int, height: int) -> tuple[int, int]:
    return max(MIN_SIDE, width + width % 2), max(MIN_SIDE, height + height % 2)


def encode(frames: list[np.ndarray], codec: str = "hevc", quality: int = 28, inter: bool = True) -> bytes:
    """Code RGB uint8 frames ``(H, W, 3)``; ``quality`` is the CRF (lower is better). ``inter``: one
    intra frame, then frames predicted from earlier ones; else every frame intra-coded."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at info level
    codec_id = NAMES[codec]
    encoder, fmt, _ = KEYFRAME_CODECS[codec_id]
    height, width = frames[0].shape[:2]
    pad_w, pad_h = padded_size(width, height)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        options = {"crf": str(quality)}
        keyint = max(len(frames), 2) if inter else 1  # the whole payload one group of pictures, or intra only
        if encoder == "libx265":
            options["x265-params"] = f"log-level=error:keyint={keyint}:min-keyint={keyint}:info=0"
        else:
            options.update({"preset": "6", "svtav1-params": f"keyint={keyint}"})
        stream = container.add_stream(encoder, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = pad_w, pad_h, "yuv420p"
        ctx = stream.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1
        ctx.color_range = 1
        for index, image in enumerate(frames):
            padded = np.pad(image, ((0, pad_h - height), (0, pad_w - width), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            frame.pts = index
            container.mux(stream.encode(frame))
            if index == 0:  # the encoder opened just now: SVT-AV1 as root opens at real-time priority
                leave_realtime()
        container.mux(stream.encode(None))
    return HEADER.pack(codec_id, quality, len(frames)) + buffer.getvalue()


def decode(payload: bytes, width: int, height: int, max_frames: int) -> list[np.ndarray]:
    """Decode keyframes; refuses anything that is not exactly ``count`` frames of the padded size."""
    if len(payload) < HEADER.size:
        raise BitstreamError("keyframes.decode: truncated")
    codec_id, _, count = HEADER.unpack_from(payload)
    if codec_id not in KEYFRAME_CODECS or not 1 <= count <= max_frames:
        raise BitstreamError(f"keyframes.decode: codec {codec_id} or count {count} is invalid")
    _, fmt, decoder = KEYFRAME_CODECS[codec_id]
    pad_w, pad_h = padded_size(width, height)
    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(payload[HEADER.size :]), format=fmt) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if (frame.width, frame.height) != (pad_w, pad_h) or len(frames) >= count:
                    raise BitstreamError("keyframes.decode: frame size or count does not match the header")
                rgb = frame.to_ndarray(format="rgb24", src_colorspace=1, src_color_range=1, dst_color_range=2)
                frames.append(rgb[:height, :width].copy())
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise BitstreamError(f"keyframes.decode: cannot decode: {exc}") from exc
    if len(frames) != count:
        raise BitstreamError(f"keyframes.decode: {len(frames)} frames decoded, {count} declared")
    return frames
