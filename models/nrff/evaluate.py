"""Rate-distortion of NRFF against x264, x265 (preset medium) and AV1 at equal sizes, on real clips.

For each clip and target rate, NRFF is fitted (``--steps`` per point, so results do not depend on
the machine's load) and its whole file counted; then x264, x265 and SVT-AV1 (preset 6, the codec of
NRFF's keyframes) get the CRF whose stream is the largest not above that size (their elementary
stream bytes, container overhead not counted, which favours them slightly). PSNR is RGB, averaged
over frames. Also: the keyframe codec comparison (HEVC vs AV1, coded as NRFF codes them) on the
clip's keyframes, NRFF encode time and decode frames per second. Writes a markdown report and a PNG
plot.

``python -m models.nrff.evaluate --steps 5000 --plot docs/codec_nrff_rd.png`` (tables in docs/codec.md)
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from models.bitstream import container, keyframes
from models.evaluation import (
    CLASSIC,
    bigbuckbunny_path,
    carphone_path,
    classic,
    decoded_frames,
    mean_psnr,
    plot,
    read_clip,
)
from models.nrff.decode import open_bitstream
from models.nrff.fit import WEIGHT_BITS, FitOptions, fit
from models.nrff.network import keyframe_indices

RATES = (0.025, 0.05, 0.1, 0.2)
"""Target bits per pixel."""
REFERENCES = {"x264": "libx264", "x265": "libx265", "av1": "libsvtav1"}
"""The block codecs NRFF is compared with at equal size. AV1 (SVT-AV1, the keyframes' codec) shows
what the keyframe codec alone does with all the bits, that is what the flow network and the
residual add."""


def evaluation_clips(frames: int) -> dict[str, np.ndarray]:
    """The clips NRFF is evaluated on, first ``frames`` frames each: carphone as it is, bigbuckbunny
    downscaled to 256x144."""
    return {
        "carphone 176x144": read_clip(carphone_path(), frames),
        "bigbuckbunny 256x144": read_clip(bigbuckbunny_path(), frames, width=256),
    }


def classic_at_size(frames: np.ndarray, encoder: str, size: int) -> tuple[int, int, float]:
    """(crf, bytes, PSNR) of the best CRF whose stream is at most ``size`` bytes (binary search)."""
    highest = CLASSIC[encoder][1]
    low, high, best = 0, highest, None
    while low <= high:
        crf = (low + high) // 2
        nbytes, decoded = classic(frames, encoder, crf)
        if nbytes <= size:
            best, high = (crf, nbytes, mean_psnr(decoded, frames)), crf - 1
        else:
            low = crf + 1
    if best is None:
        nbytes, decoded = classic(frames, encoder, highest)
        best = (highest, nbytes, mean_psnr(decoded, frames))
    return best


def keyframe_table(frames: np.ndarray, gop: int = 30) -> list[str]:
    """HEVC vs AV1 on the clip's keyframes as NRFF codes them (the first intra, the rest predicted):
    bytes and PSNR per CRF."""
    keys = [frames[i] for i in keyframe_indices(len(frames), gop)]
    height, width = keys[0].shape[:2]
    lines = ["| keyframe codec | CRF | bytes | PSNR |", "|---|---|---|---|"]
    for codec in ("hevc", "av1"):
        for crf in (26, 32, 38, 44):
            payload = keyframes.encode(keys, codec, crf)
            decoded = np.stack(keyframes.decode(payload, width, height, len(keys)))
            lines.append(f"| {codec} | {crf} | {len(payload)} | {mean_psnr(decoded, np.stack(keys)):.2f} |")
    return lines


def evaluate_clip(name: str, frames: np.ndarray, steps: int, rates, weight_bits: int = 8) -> list[dict]:
    pixels = frames[..., 0].size
    rows = []
    for bpp in rates:
        started = time.monotonic()
        stream = fit(frames, Fraction(30), FitOptions(bpp=bpp, minutes=None, steps=steps, weight_bits=weight_bits))
        encode_s = time.monotonic() - started
        decoder, sections = open_bitstream(stream), container.parse(stream).sections
        started = time.monotonic()
        decoded = decoded_frames(decoder.frames())
        decode_fps = len(decoded) / (time.monotonic() - started)
        row = {
            "clip": name,
            "target": bpp,
            "nrff_bytes": len(stream),
            "nrff_bpp": 8 * len(stream) / pixels,
            "nrff_psnr": mean_psnr(decoded, frames),
            "encode_s": encode_s,
            "decode_fps": decode_fps,
            "gop": decoder.config["gop"],
            "width": decoder.config["width"],
            "key_share": len(sections["KEYF"]) / len(stream),
            "residual_share": len(sections.get("RESD", b"")) / len(stream),
        }
        for label, encoder in REFERENCES.items():
            crf, nbytes, psnr = classic_at_size(frames, encoder, len(stream))
            row.update({f"{label}_crf": crf, f"{label}_bpp": 8 * nbytes / pixels, f"{label}_psnr": psnr})
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="NRFF fitting steps per rate point")
    parser.add_argument("--frames", type=int, default=60, help="frames of each clip")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--weight-bits", type=int, default=8, choices=sorted(WEIGHT_BITS), help="NRFF's weight bits")
    parser.add_argument("--out", type=Path, help="markdown report")
    parser.add_argument("--plot", type=Path, help="PNG rate-distortion plot")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    clips = evaluation_clips(args.frames)
    lines = [
        "## Keyframe codec (carphone keyframes, GOP 30)",
        "",
        *keyframe_table(clips["carphone 176x144"]),
        "",
        "## NRFF vs x264 / x265 (preset medium) / AV1 (SVT-AV1 preset 6) at equal size",
        "",
        "| clip | target bpp | NRFF bpp | NRFF PSNR | x264 bpp | x264 PSNR | x265 bpp | x265 PSNR | AV1 bpp | "
        "AV1 PSNR | NRFF encode s | NRFF decode fps | NRFF GOP | keyframes' bytes | width | residual's bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for name, frames in clips.items():
        rows += evaluate_clip(name, frames, args.steps, args.rates, args.weight_bits)
    for r in rows:
        lines.append(
            f"| {r['clip']} | {r['target']:g} | {r['nrff_bpp']:.4f} | {r['nrff_psnr']:.2f} | "
            + "".join(f"{r[f'{label}_bpp']:.4f} | {r[f'{label}_psnr']:.2f} | " for label in REFERENCES)
            + f"{r['encode_s']:.0f} | {r['decode_fps']:.1f} | {r['gop']} | {r['key_share']:.0%} | {r['width']} | "
            f"{r['residual_share']:.0%} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.plot:
        plot(rows, args.plot, ("nrff", *REFERENCES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
