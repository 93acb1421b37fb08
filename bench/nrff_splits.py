"""NRFF's split of the bits (GOP length, keyframes' share, latent residual's share) at fixed rates.

For each clip of ``models.nrff.evaluate`` (its first 60 frames), each target rate and each split,
NRFF is fitted with ``--steps`` (so the numbers do not depend on the machine's load) and the whole
file is decoded; x264 medium gets the CRF whose stream is the largest not above that file, as in the
evaluation. The rule ``SPLITS`` in ``models/nrff/fit.py`` is chosen from these tables. Not a test:
it prints numbers.

``python -m bench.nrff_splits --clips bigbuckbunny --rates 0.1 --splits 10:0.6:0 5:0.6:0``
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction

from bench import header, row, split_cells
from models.bitstream import container
from models.evaluation import decoded_frames, mean_psnr
from models.nrff.decode import open_bitstream
from models.nrff.evaluate import classic_at_size, evaluation_clips
from models.nrff.fit import FitOptions, fit


def parse_split(text: str) -> tuple[int, float, float]:
    """``GOP:KEYFRAME_SHARE[:RESIDUAL_SHARE]`` -> the three numbers (no residual share: 0)."""
    try:
        gop, share, *rest = text.split(":")
        if len(rest) > 1:
            raise ValueError(text)
        return int(gop), float(share), float(rest[0]) if rest else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"a split is GOP:KEYFRAME_SHARE[:RESIDUAL_SHARE], not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=["carphone", "bigbuckbunny"], help="name prefixes")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1])
    parser.add_argument("--splits", type=parse_split, nargs="+", default=[(10, 0.6, 0.0)])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args(argv)
    clips = {
        name: frames for name, frames in evaluation_clips(args.frames).items() if name.startswith(tuple(args.clips))
    }
    header(
        "clip",
        "target bpp",
        "GOP",
        "keyframe share",
        "residual share",
        "NRFF bpp",
        "NRFF PSNR",
        "x264 bpp",
        "x264 PSNR",
        "keyframes' bytes",
        "width",
        "encode s",
    )
    for name, frames in clips.items():
        pixels = frames[..., 0].size
        for bpp in args.rates:
            for gop, share, residual in args.splits:
                options = FitOptions(
                    bpp=bpp, minutes=None, steps=args.steps, gop=gop, keyframe_share=share, residual_share=residual
                )
                started = time.monotonic()
                stream = fit(frames, Fraction(30), options)
                seconds = time.monotonic() - started
                decoded = decoded_frames(open_bitstream(stream).frames())
                x264 = classic_at_size(frames, "libx264", len(stream))
                sections = container.parse(stream).sections
                keys = len(sections["KEYF"]) / len(stream)
                psnr, width = mean_psnr(decoded, frames), json.loads(sections["CONF"])["width"]
                rate, x264_rate = 8 * len(stream) / pixels, 8 * x264[1] / pixels
                nrff = [f"{rate:.4f}", f"{psnr:.2f}", f"{x264_rate:.4f}", f"{x264[2]:.2f}", f"{keys:.0%}", width]
                row(name, *split_cells(bpp, gop, share, residual), *nrff, f"{seconds:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
