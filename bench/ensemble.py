"""How much a VideoINR checkpoint gains from test-time ensembles on carphone (an experiment, not a test).

Each ensemble runs the model on transformed copies of the low-res input (horizontal flip, the
flips and transpose of the dihedral group, time reversal), transforms each output back and averages
them before the 8-bit rounding, so it costs one full run per member. ``flowsym`` is not an ensemble:
it averages each pair's flows with those of the swapped pair (one extra flow estimate per pair).
What it measures is how far the checkpoint is from what its own errors allow: an ensemble of n
members costs n times the queries, so none of these is a serving option at the speed asked of vinr.

``python -m bench.ensemble --model videoinr-s --methods single flowsym reverse hflip dihedral``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from bench import header, row
from models import ops, registry
from models.videoinr import evaluate

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]
"""(forward, inverse) on a ``(T, 3, H, W)`` clip."""

IDENTITY: Transform = (lambda x: x, lambda x: x)


def dihedral() -> list[Transform]:
    """The 8 flips and transposes of the image plane."""
    members = []
    for transpose in (False, True):
        for dims in ((), (-1,), (-2,), (-2, -1)):

            def forward(x, dims=dims, transpose=transpose):
                x = x.flip(dims) if dims else x
                return x.transpose(-1, -2) if transpose else x

            def inverse(x, dims=dims, transpose=transpose):
                x = x.transpose(-1, -2) if transpose else x
                return x.flip(dims) if dims else x

            members.append((forward, inverse))
    return members


ENSEMBLES: dict[str, list[Transform]] = {
    "single": [IDENTITY],
    "reverse": [IDENTITY, (lambda x: x.flip(0), lambda x: x.flip(0))],
    "hflip": [IDENTITY, (lambda x: x.flip(-1), lambda x: x.flip(-1))],
    "dihedral": dihedral(),
}


class SymmetricFlows(torch.nn.Module):
    """A flow estimator that averages its flows with those of the swapped pair."""

    def __init__(self, motion: torch.nn.Module):
        super().__init__()
        self.motion = motion

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> torch.Tensor:
        swapped = self.motion(feat1, feat0)
        return 0.5 * (self.motion(feat0, feat1) + torch.cat([swapped[:, 2:], swapped[:, :2]], 1))


def rebuild(model, method: str, low: torch.Tensor, k: int, height: int, width: int) -> torch.Tensor:
    """All frames rebuilt by ``method`` from the kept low-res frames ``low``."""
    if method == "flowsym":
        plain = model.motion
        model.motion = SymmetricFlows(plain)
        try:
            return evaluate.run_model(model, low, k, height, width)
        finally:
            model.motion = plain
    outputs = []
    for forward, inverse in ENSEMBLES[method]:
        size = forward(torch.empty(1, 1, height, width)).shape[-2:]
        outputs.append(inverse(evaluate.run_model(model, forward(low), k, *size)))
    return torch.stack(outputs).mean(0)


def main(argv: list[str] | None = None) -> int:
    """Print carphone's Y-PSNR (all, kept and in-between frames) for each method and cell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=registry.DEFAULT_MODEL)
    parser.add_argument("--methods", nargs="+", default=["single"], choices=[*ENSEMBLES, "flowsym"])
    parser.add_argument("--scales", type=float, nargs="+", default=[4.0])
    parser.add_argument("--time-factors", type=int, nargs="+", default=[4])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = registry.load(args.model)
    clip = evaluate.read_frames(evaluate.carphone_path(), None)
    height, width = clip.shape[-2:]
    header("model", "scale", "time", "method", "runs", "Y-PSNR all", "Y-PSNR kept", "Y-PSNR between", "seconds")
    for scale in args.scales:
        for k in args.time_factors:
            truth = clip[: (len(clip) - 1) // k * k + 1]
            low = ops.degrade(truth, round(height / scale), round(width / scale))[::k]
            for method in args.methods:
                started = time.time()
                result = evaluate.scores(rebuild(model, method, low, k, height, width), truth, k)
                runs = 1 if method == "flowsym" else len(ENSEMBLES[method])
                kept = len(low)  # the mean over all frames less the in-between frames' share
                kept_y = (result["y_all"] * len(truth) - result["y_between"] * (len(truth) - kept)) / kept
                row(
                    args.model,
                    f"{scale:g}x",
                    f"{k}x",
                    method,
                    runs,
                    f"{result['y_all']:.2f}",
                    f"{kept_y:.2f}",
                    f"{result['y_between']:.2f}",
                    f"{time.time() - started:.0f}",
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
