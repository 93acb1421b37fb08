"""D-NeRV's split of the bits (keyframe spacing, keyframes' share, latent residual's share) at fixed rates.

For each target rate and each split, a library of ``models.dnerv.evaluate``'s collection (eight
16-frame clips, 160x64) is fitted from the shipped base with ``--steps`` (so the numbers do not
depend on the machine's load) and every video decoded. The rule ``SPLITS`` in ``models/dnerv/fit.py``
is chosen from these tables. Not a test: it prints numbers.

``python -m bench.dnerv_splits --rates 0.4 --splits 2:0.7:0.15 2:0.85`` (``GOP:KEYFRAME_SHARE[:RESIDUAL_SHARE]``,
no residual share: none)
"""

from __future__ import annotations

import argparse
import time

from bench import header, row, split_cells
from bench.nrff_splits import parse_split
from models.bitstream import container
from models.dnerv.evaluate import clips, library_psnr
from models.dnerv.fit import DNeRVOptions, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.4])
    parser.add_argument("--splits", type=parse_split, nargs="+", default=[(2, 0.7, 0.15)])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    videos = clips()
    pixels = sum(v.frames[..., 0].size for v in videos)
    header(
        "target bpp",
        "GOP",
        "keyframe share",
        "residual share",
        "D-NeRV bpp",
        "D-NeRV PSNR",
        "keyframes' bytes",
        "residual's bytes",
        "encode s",
        "decode fps",
    )
    for bpp in args.rates:
        for gop, share, residual in args.splits:
            options = DNeRVOptions(
                bpp=bpp, minutes=None, steps=args.steps, gop=gop, keyframe_share=share, residual_share=residual
            )
            started = time.monotonic()
            data = fit(videos, options)
            seconds = time.monotonic() - started
            psnr, fps = library_psnr(data, videos)
            sections = container.parse(data).sections
            keys, resd = (len(sections.get(name, b"")) / len(data) for name in ("KEYF", "RESD"))
            measured = [f"{8 * len(data) / pixels:.4f}", f"{psnr:.2f}", f"{keys:.0%}", f"{resd:.0%}"]
            row(*split_cells(bpp, gop, share, residual), *measured, f"{seconds:.0f}", f"{fps:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
