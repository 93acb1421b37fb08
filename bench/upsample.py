"""Benchmark ``vinr upsample``: output megapixels per second and seconds per stage (not a test).

``python -m bench.upsample [--input samples/bikes.mp4] [--scale 2] [--time-factor 2] [--device cpu]``
prints a markdown row; stages overlap (decode and encode run in their own threads), so they do not
add up to the wall time.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from worker.media import EncodeOptions
from worker.pipeline import UpsampleRequest, load_upsampler, run_upsample


def machine(device: str) -> str:
    """A one-line description of where the benchmark ran."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="samples/bikes.mp4")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--time-factor", type=float, default=2.0)
    parser.add_argument("--model", default="videoinr-s")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="runs; the fastest is reported (the first warms up)")
    args = parser.parse_args(argv)
    request = UpsampleRequest(
        scale=args.scale,
        time_factor=args.time_factor,
        model=args.model,
        device=args.device,
        half=args.half,
        tile=args.tile,
        encode=EncodeOptions(preset="medium"),
    )
    upsampler = load_upsampler(request)
    best = None
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeat):
            upsampler.times.seconds.clear()
            result = run_upsample(args.input, Path(folder) / "out.mp4", request, upsampler=upsampler)
            if best is None or result.seconds < best.seconds:
                best = result
    plan = best.plan
    megapixels = best.frames * plan.width * plan.height / 1e6
    stages = " | ".join(f"{best.stages.get(s, 0.0):.2f}" for s in ("decode", "encoder", "pair", "queries", "encode"))
    print(
        "| input | output | device | frames | wall s | output MP/s | decode s | encoder s | pair s | queries s | "
        "encode s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.input} | {plan.width}x{plan.height} @ {float(plan.fps):g} fps | {machine(args.device)} | "
        f"{best.frames} | {best.seconds:.2f} | {megapixels / best.seconds:.3f} | {stages} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
