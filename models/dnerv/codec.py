"""D-NeRV behind the codec interface (``models.codecs``): a library of videos sharing one model."""

from __future__ import annotations

import struct
from fractions import Fraction
from typing import BinaryIO

from models import codecs
from models.bitstream import container
from models.bitstream.container import BitstreamError
from models.codecs import EncodeOptions, OpenFile, Probe, Probed, Progress, Source, Video, read_at


def video_keyframes(handle: BinaryIO, section: tuple[int, int], videos: int, chosen: int) -> bytes:
    """One video's keyframe payload from a KEYF section (its index read first, then only that slice)."""
    offset, length = section
    index_size = 4 + 8 * videos
    if length < index_size:
        raise BitstreamError("probe: the KEYF index is truncated")
    (count,) = struct.unpack("<I", read_at(handle, offset, 4))
    if count != videos:
        raise BitstreamError(f"probe: KEYF has {count} entries for {videos} videos")
    start, size = struct.unpack("<II", read_at(handle, offset + 4 + 8 * chosen, 8))
    if start < index_size or start + size > length:
        raise BitstreamError(f"probe: KEYF entry {chosen} points outside the section")
    return read_at(handle, offset + start, size)


@codecs.register
class DNeRVCodec:
    """Keyframes and a motion-aware decoder shared by a library (He et al., CVPR 2023)."""

    name = "dnerv"
    many_videos = True

    def probe(self, file: OpenFile) -> Probed:
        from models.bitstream.library import choose_video
        from models.dnerv.base import check_base
        from models.dnerv.decode import read_config, weights_section
        from models.dnerv.network import keyframe_indices

        config = read_config(file.conf, file.header)
        if config.get("base"):  # a base this vinr does not ship, or another version of it, is refused now
            check_base(config["base"]["name"], config["base"]["sha256"])
        videos = config["videos"]
        chosen = choose_video(videos, file.video)
        entry = videos[chosen]
        size = (entry["width"], entry["height"])
        frames, fps = entry["frames"], Fraction(*entry["fps"])
        probe = Probe(file.header, chosen, entry["name"], frames, fps, 0, frames, size)
        payload = video_keyframes(file.handle, file.sections["KEYF"], len(videos), chosen)
        count = len(keyframe_indices(entry["frames"], config["gop"]))
        return Probed(probe, weights_section(config), payload, count)

    def check(self, options: EncodeOptions) -> None:
        if options.residual_share is not None:
            raise ValueError("a residual share is NRFF's option: dnerv sets its own by the rate")
        if options.weight_bits != 8:
            raise ValueError("weight bits are NRFF's option: dnerv stores 8-bit weights")

    def open(self, data: bytes, video: int) -> Source:
        from models.dnerv.decode import open_library

        library = open_library(data)
        library.keyframes(video)  # decoded now: bad keyframes are an unreadable input, not a failure mid-decode
        count, (width, height) = library.videos[video]["frames"], library.size(video)
        return Source(width, height, library.fps(video), count, lambda start, stop: library.frames(video, start, stop))

    def encode(self, videos: list[Video], options: EncodeOptions, device: object, progress: Progress) -> bytes:
        from models.dnerv.fit import DNeRVOptions, fit

        self.check(options)
        return fit(
            videos, DNeRVOptions(bpp=options.bpp, minutes=options.minutes, steps=options.steps), device, progress
        )

    def describe(self, stream: container.Bitstream) -> list[str]:
        from models.dnerv.decode import read_config

        config = read_config(stream.sections.get("CONF", b""), stream.header)
        lines = [f"keyframes: every {config['gop']} frames"]
        for index, video in enumerate(config["videos"]):
            lines.append(
                f"video {index}: {video['name']} ({video['width']}x{video['height']}, {video['frames']} frames, "
                f"{Fraction(*video['fps'])} fps)"
            )
        return lines
