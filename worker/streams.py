"""Audio and subtitle passthrough: the input's other streams copied (or transcoded) into the output, or,
in slow motion, slowed with the video: audio through FFmpeg's ``atempo`` (pitch kept), subtitles retimed."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from av.audio.stream import AudioStream
from av.filter import Graph

log = logging.getLogger(__name__)

COPYABLE_AUDIO = {
    "mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
    "webm": {"opus", "vorbis"},
}
"""Audio codecs each muxer takes as they are (Matroska takes any)."""
COPYABLE_SUBTITLES = {
    "mp4": {"mov_text"},
    "mov": {"mov_text"},
    "webm": {"webvtt"},
    "matroska": {"subrip", "ass", "ssa", "webvtt", "hdmv_pgs_subtitle", "dvd_subtitle"},
}
"""Subtitle codecs each muxer takes; others are dropped with a warning."""
AUDIO_LEAD = 0.5
"""Seconds of audio muxed ahead of the last written video frame, for interleaving."""


def tempo_chain(slow: int) -> list[float]:
    """``atempo`` factors whose product is ``1 / slow`` (one filter takes 0.5 at the least)."""
    factors, left = [], 1.0 / slow
    while left < 0.5:
        factors.append(0.5)
        left /= 0.5
    return [*factors, left] if left < 1.0 else factors


class SlowAudio:
    """One audio stream decoded, slowed ``slow`` times by ``atempo`` (pitch kept) and encoded again."""

    def __init__(self, stream: AudioStream, output: av.container.OutputContainer, muxer: str, slow: int):
        codec = "libopus" if muxer == "webm" else "aac"
        context = stream.codec_context
        self.rate = 48000 if codec == "libopus" else context.sample_rate
        self.out = cast(AudioStream, output.add_stream(codec, rate=self.rate, layout=context.layout.name))
        self.graph = Graph()
        chain = [self.graph.add_abuffer(template=stream)]
        for factor in tempo_chain(slow):
            chain.append(self.graph.add("atempo", f"{factor:.6f}"))
        out = self.out.codec_context
        chain.append(
            self.graph.add(
                "aformat", f"sample_fmts={out.format.name}:channel_layouts={out.layout.name}:sample_rates={self.rate}"
            )
        )
        chain.append(self.graph.add("abuffersink"))
        self.graph.link_nodes(*chain).configure()
        self.samples = 0  # written so far: the next frame's pts at 1/rate

    def push(self, frame: av.AudioFrame | None) -> list[av.Packet]:
        """Packets for ``frame`` (None: flush the filters and the encoder)."""
        self.graph.push(frame)
        packets = []
        while True:
            try:
                slowed = cast(av.AudioFrame, self.graph.pull())
            except (av.BlockingIOError, av.EOFError):
                break
            slowed.pts, slowed.time_base = self.samples, Fraction(1, self.rate)
            self.samples += slowed.samples
            packets.extend(self.out.encode(slowed))
        if frame is None:
            packets.extend(self.out.encode(None))
        return packets


class StreamCopier:
    """Copies (or, where the muxer refuses the codec, transcodes to AAC) the input's audio, and copies
    the subtitles the muxer takes, interleaved with the video by time. With ``slow`` (slow motion) the
    audio is slowed as much as the video and every subtitle shows ``slow`` times later and longer."""

    def __init__(self, source: Path, output: av.container.OutputContainer, muxer: str, slow: int = 1):
        self.input = av.open(str(source), metadata_errors="ignore")  # already opened once by VideoReader
        self.output = output
        self.slow = slow
        self.routes: dict[int, tuple] = {}
        for stream in self.input.streams.audio:
            name = stream.codec_context.name
            if slow > 1:
                self.routes[stream.index] = ("slow", SlowAudio(stream, output, muxer, slow))
            elif muxer == "matroska" or name in COPYABLE_AUDIO.get(muxer, set()):
                self.routes[stream.index] = ("copy", output.add_stream_from_template(stream))
            else:
                log.warning(
                    "audio %s does not fit %s: transcoding to %s", name, muxer, "opus" if muxer == "webm" else "aac"
                )
                codec = "libopus" if muxer == "webm" else "aac"
                rate = 48000 if codec == "libopus" else stream.codec_context.sample_rate
                out = cast(AudioStream, output.add_stream(codec, rate=rate, layout=stream.codec_context.layout.name))
                resampler = av.AudioResampler(format=out.codec_context.format.name, layout=out.layout.name, rate=rate)
                self.routes[stream.index] = ("transcode", out, resampler)
        for subtitles in self.input.streams.subtitles:
            name = subtitles.codec_context.name
            if name in COPYABLE_SUBTITLES.get(muxer, set()):
                self.routes[subtitles.index] = ("copy", output.add_stream_from_template(subtitles))
            else:
                log.warning("subtitles %s do not fit %s: dropped", name, muxer)
        streams = [s for s in self.input.streams if s.index in self.routes]
        self.packets = self.input.demux(*streams) if streams else iter(())
        self.pending: av.Packet | None = None

    def advance(self, until: float | None) -> None:
        """Mux packets whose output time is before ``until`` seconds (all remaining when None)."""
        while True:
            if self.pending is None:
                self.pending = next(self.packets, None)
                if self.pending is None:
                    return
            packet = self.pending
            if packet.dts is None:  # demuxer flush packet
                self.pending = None
                continue
            shown = float(packet.pts * packet.time_base) * self.slow if packet.pts is not None else None
            if until is not None and shown is not None and shown > until:
                return
            self.pending = None
            self._route(packet)

    def _route(self, packet) -> None:
        route = self.routes[packet.stream.index]
        if route[0] == "copy":
            if self.slow > 1:  # subtitles: shown as much later and longer as the video
                packet.pts = packet.pts * self.slow if packet.pts is not None else None
                packet.dts = packet.dts * self.slow if packet.dts is not None else None
                packet.duration = packet.duration * self.slow
            packet.stream = route[1]
            self.output.mux(packet)
            return
        if route[0] == "slow":
            for frame in packet.decode():
                self.output.mux(route[1].push(frame))
            return
        _, out, resampler = route
        for frame in packet.decode():
            for resampled in resampler.resample(frame):
                self.output.mux(out.encode(resampled))

    def finish(self) -> None:
        """Mux what is left and flush transcoders."""
        self.advance(None)
        for route in self.routes.values():
            if route[0] == "slow":
                self.output.mux(route[1].push(None))
            if route[0] == "transcode":
                for resampled in route[2].resample(None):
                    self.output.mux(route[1].encode(resampled))
                self.output.mux(route[1].encode(None))
        self.close()

    def close(self) -> None:
        """Release the input file (idempotent): a deleted upload's disk space is freed only then."""
        self.input.close()
