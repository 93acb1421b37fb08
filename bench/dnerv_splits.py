"""D-NeRV's split of the bits (keyframe spacing, keyframes' share) at fixed rates.

For each target rate and each split, a library of ``models.dnerv.evaluate``'s collection (eight
16-frame clips, 160x64) is fitted from the shipped base with ``--steps`` (so the numbers do not
depend on the machine's load) and every video decoded. The rule ``SPLITS`` in ``models/dnerv/fit.py``
is chosen from these tables. Not a test: it prints numbers.

``python -m bench.dnerv_splits --rates 0.4 --splits 8:0.7 4:0.8 2:0.85``
"""

from __future__ import annotations

import argparse
import time

from models.bitstream import container
from models.dnerv.evaluate import clips, library_psnr
from models.dnerv.fit import DNeRVOptions, fit


def parse_split(text: str) -> tuple[int, float]:
    """``GOP:KEYFRAME_SHARE`` -> the two numbers."""
    try:
        gop, share = text.split(":")
        return int(gop), float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a split is GOP:KEYFRAME_SHARE, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.4])
    parser.add_argument("--splits", type=parse_split, nargs="+", default=[(8, 0.7)])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args(argv)
    videos = clips()
    pixels = sum(v.frames[..., 0].size for v in videos)
    print("| target bpp | GOP | keyframe share | D-NeRV bpp | D-NeRV PSNR | keyframes' bytes | encode s | decode fps |")
    print("|---|---|---|---|---|---|---|---|")
    for bpp in args.rates:
        for gop, share in args.splits:
            started = time.monotonic()
            data = fit(videos, DNeRVOptions(bpp=bpp, minutes=None, steps=args.steps, gop=gop, keyframe_share=share))
            seconds = time.monotonic() - started
            psnr, fps = library_psnr(data, videos)
            keys = len(container.parse(data).sections["KEYF"]) / len(data)
            print(
                f"| {bpp:g} | {gop} | {share:.0%} | {8 * len(data) / pixels:.4f} | {psnr:.2f} | {keys:.0%} | "
                f"{seconds:.0f} | {fps:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
