"""NRFF's keyframes coded each on its own (intra) against predicted from earlier keyframes (inter).

For each clip of ``models.nrff.evaluate`` (its first 60 frames, bigbuckbunny downscaled to 256x144)
and each GOP, the keyframes NRFF would store are coded with AV1 and HEVC at a few CRFs, both ways;
the table gives bytes and RGB PSNR of the decoded keyframes. Not a test: it prints numbers.

``python -m bench.keyframes [--gops 10 30] [--crfs 20 30 40]``
"""

from __future__ import annotations

import argparse

import numpy as np

from models.bitstream import keyframes
from models.evaluation import mean_psnr
from models.nrff.evaluate import evaluation_clips
from models.nrff.network import keyframe_indices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gops", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--crfs", type=int, nargs="+", default=[20, 30, 40])
    parser.add_argument("--codecs", nargs="+", default=["av1", "hevc"], choices=sorted(keyframes.NAMES))
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args(argv)
    clips = evaluation_clips(args.frames)
    print("| clip | GOP | keyframes | codec | CRF | intra bytes | intra PSNR | inter bytes | inter PSNR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, frames in clips.items():
        height, width = frames.shape[1:3]
        for gop in args.gops:
            keys = [frames[i] for i in keyframe_indices(len(frames), gop)]
            for codec in args.codecs:
                for crf in args.crfs:
                    cells = []
                    for inter in (False, True):
                        payload = keyframes.encode(keys, codec, crf, inter=inter)
                        decoded = np.stack(keyframes.decode(payload, width, height, len(keys)))
                        cells += [str(len(payload)), f"{mean_psnr(decoded, np.stack(keys)):.2f}"]
                    print(f"| {name} | {gop} | {len(keys)} | {codec} | {crf} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
