"""NRFF behind the codec interface (``models.codecs``): one video per file."""

from __future__ import annotations

from dataclasses import asdict

from models import codecs
from models.bitstream import container
from models.codecs import EncodeOptions, OpenFile, Probe, Probed, Progress, Source, Video, read_at


@codecs.register
class NRFFCodec:
    """Flow and residual fields over keyframes (Rho et al.)."""

    name = "nrff"
    many_videos = False

    def probe(self, file: OpenFile) -> Probed:
        from models.nrff.decode import read_config
        from models.nrff.network import keyframe_indices

        frames = file.header.frames
        count = len(keyframe_indices(frames, read_config(file.conf)["gop"]))
        probe = Probe(file.header, 0, None, frames, file.header.fps, 0, frames)
        return Probed(probe, "WGTS", read_at(file.handle, *file.sections["KEYF"]), count)

    def check(self, options: EncodeOptions) -> None:
        from models.nrff.fit import WEIGHT_BITS

        if options.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight bits must be one of {sorted(WEIGHT_BITS)}, not {options.weight_bits}")
        if options.residual_share is not None and not 0 <= options.residual_share <= 0.9:
            raise ValueError(f"residual share must be in [0, 0.9], got {options.residual_share:g}")

    def open(self, data: bytes, video: int) -> Source:
        from models.nrff.decode import open_bitstream

        decoder = open_bitstream(data)
        header = decoder.header
        return Source(header.width, header.height, header.fps, header.frames, decoder.frames)

    def encode(self, videos: list[Video], options: EncodeOptions, device: object, progress: Progress) -> bytes:
        from models.nrff.fit import FitOptions, fit

        self.check(options)
        if len(videos) != 1:
            raise ValueError(f"nrff holds one video, not {len(videos)}")
        return fit(videos[0].frames, videos[0].fps, FitOptions(**asdict(options)), device, progress)

    def describe(self, stream: container.Bitstream) -> list[str]:
        return []
