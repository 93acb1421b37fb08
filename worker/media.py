"""Video in and out with PyAV: true timestamps, the source's colour matrix, rotation, audio passthrough.

``VideoReader`` yields display-oriented RGB frames as float32 ``(H, W, 3)`` in [0, 1] with their
presentation time in seconds, converting YUV with the input's own matrix and range (10-bit kept as
16-bit before the float conversion). ``VideoWriter`` encodes RGB frames at given times, copies the
input's audio (and subtitles the container takes) without re-encoding where it can, and renames a
temporary file onto the output only when everything succeeded.

Colour: untagged inputs are read as BT.709 from 720 lines up and BT.601 below (what players
assume); outputs are tagged BT.709 from 720 lines up and BT.601 (SMPTE 170M) below, limited range.
Sizes: 4:2:0 and 4:2:2 formats need even widths (and 4:2:0 even heights); ``even_size`` rounds a
requested size up, and the model renders that exact size, so nothing is padded or cropped.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

from models.scheduling import leave_realtime
from models.videoinr.upsampler import DEVICE_FORMATS, FrameFormat, HostFrame
from worker.errors import InputError, NoVideoStreamError, OutputError, ParameterError
from worker.streams import AUDIO_LEAD, StreamCopier

log = logging.getLogger(__name__)

CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
"""Output file extension -> FFmpeg muxer."""
OUTPUT_CODECS = {
    "h264": "libx264",
    "libx264": "libx264",
    "hevc": "libx265",
    "h265": "libx265",
    "libx265": "libx265",
    "av1": "libsvtav1",
    "libsvtav1": "libsvtav1",
    "vp9": "libvpx-vp9",
    "libvpx-vp9": "libvpx-vp9",
    "ffv1": "ffv1",
}
"""Accepted ``--codec`` names -> FFmpeg encoder."""
NVENC = {"libx264": "h264_nvenc", "libx265": "hevc_nvenc", "libsvtav1": "av1_nvenc"}
"""Each CPU encoder's NVENC counterpart (NVIDIA's hardware encoder, in PyAV's FFmpeg)."""
NVENC_PIX_FMT = {"yuv420p10le": "p010le"}
"""Pixel formats NVENC takes in another layout of the same samples (converted on the host, a copy)."""
ENCODER_KINDS = ("auto", "cpu", "nvenc")
"""``--encoder``: auto (NVENC when the job runs on CUDA and it opens, else the CPU encoder), cpu, nvenc (forced)."""
NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p1",
    "veryfast": "p2",
    "faster": "p3",
    "fast": "p4",
    "medium": "p5",
    "slow": "p6",
    "slower": "p7",
    "veryslow": "p7",
    "placebo": "p7",
}
"""x264/x265 preset names -> NVENC presets (p1 fastest, p7 best); SVT-AV1's 0-13 map linearly onto p7-p1."""
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libsvtav1": 30, "libvpx-vp9": 31}
"""CRF used when none is asked for: visually lossless-ish for x264 (18), comparable for the others."""
MIN_SIDE = {"libx265": 64, "libsvtav1": 4}
"""Smallest frame side each encoder takes, pixels: libx265 corrupts its heap below 64 in the bundled
build, SVT-AV1 refuses frames under 4x4 (both seen here); the others take 2x2."""
TIME_BASE = Fraction(1, 90000)
"""Output video time base (seconds per tick): exact for 24, 25, 30, 60, 120 and NTSC rates."""
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof+delay_moov", "flush_packets": "1"}
"""Muxer options of a fragmented MP4 that a client can play while it grows. ``delay_moov`` writes the moov
when the first fragment is cut, so its edit list knows the encoder's B-frame delay and the first frame
shows at 0, as in a plain MP4: a moov written before any frame cannot, and the video would start at the
encoder's delay. ``flush_packets``: each fragment reaches the file (and a streaming client) as soon as it
is muxed."""


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows before decoding: display size, rate, duration, colour and other streams."""

    width: int
    height: int
    fps: Fraction
    frames: int | None
    duration: float
    start: float
    rotation: int
    codec: str
    pix_fmt: str
    bit_depth: int
    audio: list[str] = field(default_factory=list)
    subtitles: list[str] = field(default_factory=list)


@dataclass
class Frame:
    """A decoded display-oriented RGB frame ``(H, W, 3)`` float32 in [0, 1] and its time in seconds."""

    image: np.ndarray
    time: float
    duration: float | None = None  # seconds it is shown, when the stream says


STANDARD_RATES = [
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(48),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
    Fraction(120),
    Fraction(144),
    Fraction(240),
]
"""Frame rates an average rate within 0.2% of is taken to be (timestamp rounding blurs them)."""


def snap_rate(rate: Fraction) -> Fraction:
    """The standard rate nearest ``rate`` when within 0.2%, else ``rate`` itself."""
    nearest = min(STANDARD_RATES, key=lambda r: abs(r - rate))
    return nearest if abs(nearest - rate) <= rate * Fraction(2, 1000) else rate


def open_input(path: str | Path) -> av.container.InputContainer:
    """``av.open`` with a clear InputError for anything FFmpeg cannot read."""
    if not Path(path).is_file():
        raise InputError(f"VideoReader: {path} does not exist or is not a file")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(
            f"VideoReader: cannot read {path}: it is not a video FFmpeg can open ({reason}); "
            "choose a video file such as MP4, MKV, MOV or WebM"
        ) from exc


def source_colorspace(frame: av.VideoFrame) -> int:
    """The frame's YUV matrix, or the player convention for untagged frames."""
    if frame.colorspace not in (2, None):  # 2 = unspecified
        return frame.colorspace
    return 1 if frame.height >= 720 else 5  # ITU709 : ITU601


class VideoReader:
    """Decode any input FFmpeg reads into display-oriented RGB frames with their timestamps."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.container = open_input(path)
        if not self.container.streams.video:
            self.container.close()
            raise NoVideoStreamError(f"VideoReader: {path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.rotation = self._rotation()
        self.info = self._probe()

    def _probe(self) -> VideoInfo:
        stream, ctx = self.stream, self.stream.codec_context
        if not ctx.width or not ctx.height:
            raise InputError(f"VideoReader: {self.path} has a video stream of unknown size")
        fps = snap_rate(Fraction(stream.average_rate or stream.guessed_rate or 25))
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        start = (
            float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
        )
        rotation = self.rotation
        width, height = (ctx.height, ctx.width) if rotation % 180 else (ctx.width, ctx.height)
        fmt = ctx.format
        depth = max((c.bits for c in fmt.components), default=8) if fmt else 8
        return VideoInfo(
            width,
            height,
            fps,
            stream.frames or None,
            duration,
            start,
            rotation,
            ctx.name,
            fmt.name if fmt else "unknown",
            depth,
            [s.codec_context.name for s in self.container.streams.audio],
            [s.codec_context.name for s in self.container.streams.subtitles],
        )

    def _rotation(self) -> int:
        """Counter-clockwise display rotation in degrees (a multiple of 90), read off the first frame."""
        try:
            first = next(self.container.decode(self.stream))
        except (StopIteration, av.FFmpegError) as exc:
            raise InputError(f"VideoReader: {self.path} has no decodable video frame: {exc}") from exc
        self.container.close()  # start again from the top (more robust than seeking)
        self.container = open_input(self.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        return int(round((first.rotation or 0) / 90.0)) * 90 % 360

    def seek(self, time: float) -> None:
        """Start ``frames()`` at the keyframe at or before ``time`` seconds (from the top if it cannot seek)."""
        stream = self.stream
        if time > self.info.start and stream.time_base:
            try:
                self.container.seek(int(time / stream.time_base), stream=stream, backward=True)
            except av.FFmpegError:  # not seekable: decode from the start
                pass

    def frames(self) -> Iterator[Frame]:
        """Every frame in presentation order (from ``seek``'s keyframe); raises InputError on undecodable data."""
        fmt = "rgb48le" if self.info.bit_depth > 8 else "rgb24"
        scale = 65535.0 if self.info.bit_depth > 8 else 255.0
        step = 1.0 / float(self.info.fps)
        count, last = 0, None
        try:
            for frame in self.container.decode(self.stream):
                rgb = frame.to_ndarray(
                    format=fmt,
                    src_colorspace=source_colorspace(frame),
                    src_color_range=frame.color_range or 1,
                    dst_color_range=2,
                )
                if self.info.rotation:
                    rgb = np.rot90(rgb, k=self.info.rotation // 90)
                time = frame.time if frame.time is not None else (last + step if last is not None else 0.0)
                if last is not None and time <= last:  # broken or duplicate timestamps
                    time = last + step / 16
                last = time
                count += 1
                shown = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else None
                yield Frame(np.ascontiguousarray(rgb, dtype=np.float32) / scale, float(time), shown)
        except av.FFmpegError as exc:
            raise InputError(f"VideoReader: {self.path} is corrupt after {count} frames: {exc}") from exc
        if count == 0:
            raise InputError(f"VideoReader: {self.path} has no decodable video frame")

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class OutputOptions:
    """Output encoding: codec name (see OUTPUT_CODECS), quality, speed preset, pixel format, streaming."""

    codec: str = "h264"
    crf: int | None = None  # None: the codec's default in DEFAULT_CRF
    preset: str | None = None
    pix_fmt: str | None = None
    fragmented: bool = False
    encoder_kind: str = "auto"  # ENCODER_KINDS: which encoder of the codec runs (see choose_encoder)

    @property
    def encoder(self) -> str:
        if self.codec not in OUTPUT_CODECS:
            raise ParameterError(f"OutputOptions: unknown codec {self.codec!r}; choose from {sorted(OUTPUT_CODECS)}")
        return OUTPUT_CODECS[self.codec]

    def output_pix_fmt(self, high_bit_depth: bool = False) -> str:
        """The pixel format written: the requested one, else 4:2:0 (10-bit for 10-bit input) or RGB for ffv1."""
        if self.pix_fmt:
            return self.pix_fmt
        if self.encoder == "ffv1":
            return "gbrp10le" if high_bit_depth else "bgr0"  # this FFmpeg's ffv1 takes 8-bit RGB as bgr0
        return "yuv420p10le" if high_bit_depth and self.encoder != "libx264" else "yuv420p"


def even_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """Round a size up to what a chroma-subsampled format needs (4:2:0: both even; 4:2:2: width even)."""
    fmt = av.VideoFormat(pix_fmt, 4, 4)
    chroma = fmt.components[1] if len(fmt.components) > 1 and not fmt.is_rgb else None
    wide = (width + 1) // 2 * 2 if chroma is not None and chroma.width < fmt.width else width
    tall = (height + 1) // 2 * 2 if chroma is not None and chroma.height < fmt.height else height
    return wide, tall


def check_encodable(encoder: str, width: int, height: int, pix_fmt: str) -> None:
    """ParameterError unless ``encoder`` takes ``width`` x ``height`` frames in ``pix_fmt``."""
    if (width, height) != even_size(width, height, pix_fmt):
        raise ParameterError(f"check_encodable: {pix_fmt} needs an even size, got {width}x{height}")
    smallest = MIN_SIDE.get(encoder, 1)
    if min(width, height) < smallest:
        raise ParameterError(
            f"check_encodable: {encoder} needs at least {smallest}x{smallest} pixels, got {width}x{height}; "
            "choose another codec or a larger output"
        )


def nvenc_problem(encoder: str, width: int, height: int, pix_fmt: str) -> str | None:
    """Why ``encoder``'s NVENC counterpart cannot encode ``width`` x ``height`` ``pix_fmt`` here, or None
    when it opens (opening needs an NVIDIA driver with its video capability)."""
    name = NVENC.get(encoder)
    if name is None:
        return f"{encoder} has no NVENC counterpart (h264, hevc and av1 have)"
    if name not in av.codecs_available:
        return f"this FFmpeg has no {name}"
    layout = NVENC_PIX_FMT.get(pix_fmt, pix_fmt)
    if layout not in {f.name for f in av.codec.Codec(name, "w").video_formats or ()}:
        return f"{name} takes no {pix_fmt}"
    context = cast(VideoCodecContext, av.CodecContext.create(name, "w"))
    context.width, context.height, context.pix_fmt = width, height, layout
    context.time_base = Fraction(1, 25)
    try:
        context.open()
    except (av.FFmpegError, ValueError) as exc:
        return f"{name} does not open ({exc}); it needs an NVIDIA GPU and a driver with the video capability"
    return None


def choose_encoder(options: OutputOptions, width: int, height: int, pix_fmt: str, cuda: bool) -> tuple[str, str]:
    """The FFmpeg encoder a writer opens and why: ``--encoder cpu`` the codec's CPU encoder, ``nvenc`` its
    NVENC counterpart (ParameterError when that cannot open: never a silent fallback), ``auto`` NVENC when
    the frames come from CUDA and it opens, else the CPU encoder."""
    kind, encoder = options.encoder_kind, options.encoder
    if kind not in ENCODER_KINDS:
        raise ParameterError(f"choose_encoder: encoder must be one of {ENCODER_KINDS}, not {kind!r}")
    if kind == "cpu":
        return encoder, "asked for the CPU encoder"
    if kind == "auto" and not cuda:
        return encoder, "frames are made on the CPU"
    problem = nvenc_problem(encoder, width, height, pix_fmt)
    if problem is None:
        return NVENC[encoder], "asked for NVENC" if kind == "nvenc" else "frames are made on CUDA and NVENC opens"
    if kind == "nvenc":
        raise ParameterError(f"choose_encoder: NVENC was asked for, but {problem}")
    return encoder, problem


def nvenc_options(options: OutputOptions, encoder: str, fps: Fraction) -> dict[str, str]:
    """NVENC's options for our CRF and preset: constant quality (``cq``, as CRF) under VBR, no bitrate cap."""
    cpu = next(cpu for cpu, nvenc in NVENC.items() if nvenc == encoder)
    preset = options.preset or ("8" if cpu == "libsvtav1" else "medium")
    level = NVENC_PRESETS.get(preset) or (f"p{min(7, max(1, 7 - int(preset) // 2))}" if preset.isdigit() else "p5")
    opts = {"preset": level, "tune": "hq", "rc": "vbr", "b": "0"}
    opts["cq"] = str(options.crf if options.crf is not None else DEFAULT_CRF[cpu])
    if options.fragmented:
        opts["g"] = str(max(1, round(float(fps))))
    return opts


def codec_options(encoder: str, options: OutputOptions, fps: Fraction) -> dict[str, str]:
    """Encoder private options for quality and speed."""
    if encoder in NVENC.values():
        return nvenc_options(options, encoder, fps)
    opts: dict[str, str] = {}
    if encoder in DEFAULT_CRF:
        opts["crf"] = str(options.crf if options.crf is not None else DEFAULT_CRF[encoder])
    if encoder in ("libx264", "libx265"):
        opts["preset"] = options.preset or "medium"
    if encoder == "libx265":
        opts["x265-params"] = "log-level=error"
    elif encoder == "libsvtav1":
        opts["preset"] = options.preset or "8"
    elif encoder == "libvpx-vp9":
        opts["b"] = "0"
    if options.fragmented and encoder != "ffv1":
        opts["g"] = str(max(1, round(float(fps))))  # a keyframe, so a fragment, every second
    return opts


def process_umask() -> int:
    """This process's umask, read without setting it (``os.umask`` would change it for every thread for a
    moment); 0o022 where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


class VideoWriter:
    """Encode RGB frames at given times into OUT, with the source's audio; atomic unless streaming.

    With ``atomic`` the file is written under a temporary name in OUT's folder and renamed onto OUT
    by ``close()``; ``abort()`` (or an exception inside ``with``) deletes it, so OUT is never half
    written. Without it (a growing fragmented MP4 that a client streams) OUT is written in place.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: Fraction,
        options: OutputOptions,
        audio_from: str | Path | None = None,
        high_bit_depth: bool = False,
        atomic: bool = True,
        cuda: bool = False,
        slow: int = 1,
    ):
        """``slow``: frames are written at input times, shown ``slow`` times later (slow motion); the audio
        from ``audio_from`` is slowed with them."""
        self.target = Path(path)
        self.slow = slow
        muxer = self._muxer(options)
        self.pix_fmt = options.output_pix_fmt(high_bit_depth)
        check_encodable(options.encoder, width, height, self.pix_fmt)
        encoder, why = choose_encoder(options, width, height, self.pix_fmt, cuda)
        log.info("VideoWriter: encoding with %s (%s)", encoder, why)
        self.atomic = atomic
        self.path = self._partial_path() if atomic else self.target
        self._open(muxer, encoder, width, height, fps, options)
        self.high_bit_depth = high_bit_depth
        self.rgb_format = "rgb48le" if high_bit_depth else "rgb24"
        self.matrix = 1 if height >= 720 else 6  # BT.709 : SMPTE 170M (BT.601)
        self._tag_colour()
        self.copier = StreamCopier(Path(audio_from), self.container, muxer, slow) if audio_from else None
        self.last_pts: int | None = None

    def _muxer(self, options: OutputOptions) -> str:
        """The muxer OUT's extension names; OutputError / ParameterError for what cannot be written."""
        muxer = CONTAINERS.get(self.target.suffix.lower())
        if muxer is None:
            raise OutputError(
                f"VideoWriter: unsupported output extension {self.target.suffix!r}; use one of {sorted(CONTAINERS)}"
            )
        if options.fragmented and muxer not in ("mp4", "mov"):
            raise ParameterError("VideoWriter: fragmented output needs an .mp4 or .mov file")
        return muxer

    def _partial_path(self) -> Path:
        """A new temporary file beside OUT, renamed onto it by ``close()``."""
        folder = self.target.parent
        if not folder.is_dir():
            raise OutputError(f"VideoWriter: folder {folder} does not exist")
        try:
            handle, name = tempfile.mkstemp(
                prefix=f".{self.target.stem}.", suffix=f".partial{self.target.suffix}", dir=folder
            )
        except OSError as exc:
            raise OutputError(f"VideoWriter: cannot write to {folder}: {exc}") from exc
        os.close(handle)
        return Path(name)

    def _open(self, muxer: str, encoder: str, width: int, height: int, fps: Fraction, options: OutputOptions) -> None:
        """The output container and its video stream."""
        try:
            container_options = FRAGMENTED if options.fragmented else {}
            self.container = av.open(str(self.path), "w", format=muxer, options=container_options)
            self.stream = cast(
                VideoStream, self.container.add_stream(encoder, rate=fps, options=codec_options(encoder, options, fps))
            )
        except (av.FFmpegError, OSError, ValueError) as exc:
            self._remove()
            raise OutputError(f"VideoWriter: cannot open {self.target}: {exc}") from exc
        layout = NVENC_PIX_FMT.get(self.pix_fmt, self.pix_fmt) if encoder in NVENC.values() else self.pix_fmt
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, layout
        self.stream.time_base = self.stream.codec_context.time_base = TIME_BASE

    def _tag_colour(self) -> None:
        """YUV output: BT.709 from 720 lines up, else BT.601, limited range (RGB output has no tags)."""
        if not av.VideoFormat(self.pix_fmt).is_rgb:
            ctx = self.stream.codec_context
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = self.matrix
            ctx.color_range = 1  # limited (MPEG)

    @property
    def device_format(self) -> FrameFormat | None:
        """The planes this writer takes as they are (``HostFrame``s converted on a GPU), or None for RGB."""
        return FrameFormat(self.pix_fmt, self.matrix) if self.pix_fmt in DEVICE_FORMATS else None

    def write(self, image: np.ndarray | HostFrame, time: float) -> None:
        """Encode one RGB frame ``(H, W, 3)`` float in [0, 1] (or a ``HostFrame``) of input time ``time``
        seconds (shown at ``time * slow``)."""
        if isinstance(image, HostFrame):
            if image.format is not None and image.format.pix_fmt == self.pix_fmt:
                frame = av.VideoFrame.from_ndarray(image.pixels(), format=self.pix_fmt)
                frame.colorspace, frame.color_range = image.format.matrix, 1
                self._encode(frame, time)
                return
            image = image.pixels()
        peak = 65535 if self.high_bit_depth else 255
        dtype = np.uint16 if self.high_bit_depth else np.uint8
        pixels = np.clip(np.rint(image * peak), 0, peak).astype(dtype)
        frame = av.VideoFrame.from_ndarray(pixels, format=self.rgb_format)
        layout = self.stream.pix_fmt  # the output format in the encoder's layout: one conversion, not two
        if av.VideoFormat(self.pix_fmt).is_rgb:
            frame = frame.reformat(format=layout)
        else:
            frame = frame.reformat(
                format=layout, dst_colorspace=self.matrix, dst_color_range=1, interpolation="BICUBIC"
            )
        self._encode(frame, time)

    def _encode(self, frame: av.VideoFrame, time: float) -> None:
        """Encode and mux ``frame`` at ``time`` seconds (timestamps strictly increasing), then the audio up to it."""
        if frame.format.name != self.stream.pix_fmt:  # planes made on a GPU, for NVENC's layout of the samples
            frame = frame.reformat(format=self.stream.pix_fmt)
        time *= self.slow
        pts = round(time / TIME_BASE)
        first = self.last_pts is None
        frame.pts = pts if self.last_pts is None or pts > self.last_pts else self.last_pts + 1
        self.last_pts, frame.time_base = frame.pts, TIME_BASE
        try:
            self.container.mux(self.stream.encode(frame))
        except av.FFmpegError as exc:
            raise OutputError(f"VideoWriter.write: the {self.stream.codec_context.name} encoder failed: {exc}") from exc
        if first:  # the encoder opened just now: SVT-AV1 as root opens at real-time priority
            leave_realtime()
        if self.copier:
            self.copier.advance(time + AUDIO_LEAD)

    def close(self) -> Path:
        """Flush everything and put the file at its final path."""
        try:
            self.container.mux(self.stream.encode(None))
            if self.copier:
                self.copier.finish()
            self.container.close()
        except (av.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"VideoWriter: cannot finish {self.target}: {exc}") from exc
        if self.atomic:  # the temporary file was made 0600; the output gets the mode any new file would
            os.chmod(self.path, 0o666 & ~process_umask())
            os.replace(self.path, self.target)
        return self.target

    def abort(self) -> None:
        """Stop, release the input the audio is copied from, and delete what was written."""
        if self.copier:
            self.copier.close()
        try:
            self.container.close()
        except (av.FFmpegError, OSError, AttributeError):
            pass
        self._remove()

    def _remove(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()
