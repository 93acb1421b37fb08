"""Train a VideoINR preset on the cached training set; resumable, seedable, CPU or CUDA.

As in the paper: two input frames of a 9-frame window, a target frame between them at t = k / gap,
a continuous scale sampled per batch in [1, 4] (``--scales``; low-res patch fixed, high-res crop ``round(p * s)``),
bicubic-downscaled inputs, random output points, per-pixel-normalised Charbonnier loss (``--loss mse``:
mean squared error, what PSNR scores; for a fine-tune), Adam with a cosine schedule; optionally
(``--ema``) the checkpoint is an exponential moving average of the weights. Every random draw of
step ``i`` comes from a generator seeded by ``(seed, i)``, so
a resumed run draws exactly what an uninterrupted one would.

``python -m models.videoinr.train --preset videoinr-s --data cache/videoinr --steps 12000``
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from models import ops, registry
from models.schedule import Budget, cosine
from models.videoinr import data
from models.videoinr.network import PRESETS, VideoINR, describe, widen

TRAINING_DIR = registry.CHECKPOINT_DIR / "training"
"""Resumable training states (safetensors + JSON, a few MB each), one folder per preset."""
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "charbonnier": ops.charbonnier,
    "mse": torch.nn.functional.mse_loss,
}
"""Training losses by name (``--loss``)."""
GAPS = (2, 4, 8)
"""Frame distances between the two inputs inside a window (time factors 2x, 4x, 8x)."""


@dataclass
class Batch:
    """One training batch: inputs, query points (low-res pixels), times, cells and target colours."""

    image0: torch.Tensor  # (B, 3, p, p)
    image1: torch.Tensor  # (B, 3, p, p)
    points: torch.Tensor  # (B, N, 2)
    t: torch.Tensor  # (B,)
    cell: torch.Tensor  # (B, 2)
    target: torch.Tensor  # (B, N, 3)


def augment(window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips, transpose and time reversal of a ``(T, S, S, 3)`` window."""
    if rng.random() < 0.5:
        window = window[:, :, ::-1]
    if rng.random() < 0.5:
        window = window[:, ::-1]
    if rng.random() < 0.5:
        window = window.transpose(0, 2, 1, 3)
    if rng.random() < 0.5:
        window = window[::-1]
    return window


def sample_batch(
    windows: np.ndarray,
    rng: np.random.Generator,
    batch: int,
    lr_patch: int,
    n_points: int,
    scales: tuple[float, float] = (1.0, 4.0),
    gaps: tuple[int, ...] = GAPS,
) -> Batch:
    """Draw a batch from ``windows`` ``(N, T, S, S, 3)``: one scale for the batch (uniform in ``scales``), a
    gap (from ``gaps``), start, target frame and crop per sample."""
    size = windows.shape[2]
    hr = min(size, int(round(lr_patch * rng.uniform(*scales))))
    frames0, frames1, targets, times = [], [], [], []
    for _ in range(batch):
        window = augment(windows[rng.integers(len(windows))], rng)
        gap = int(rng.choice(gaps))
        start = rng.integers(0, windows.shape[1] - gap)
        k = rng.integers(0, gap + 1)
        y, x = rng.integers(0, size - hr + 1, 2)
        crop = window[:, y : y + hr, x : x + hr]
        frames0.append(crop[start])
        frames1.append(crop[start + gap])
        targets.append(crop[start + k])
        times.append(k / gap)

    def as_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255

    hr0, hr1, hr_target = as_tensor(frames0), as_tensor(frames1), as_tensor(targets)
    index = torch.from_numpy(rng.integers(0, hr * hr, (batch, n_points)))
    target = hr_target.flatten(2).gather(2, index.unsqueeze(1).expand(-1, 3, -1)).transpose(1, 2)
    ratio = lr_patch / hr
    points = torch.stack([(index % hr).float() + 0.5, (index // hr).float() + 0.5], -1) * ratio
    return Batch(
        ops.degrade(hr0, lr_patch),
        ops.degrade(hr1, lr_patch),
        points,
        torch.tensor(times, dtype=torch.float32),
        torch.full((batch, 2), ratio),
        target,
    )


class Batches(torch.utils.data.IterableDataset):
    """Training batches from step ``first`` on, each drawn by ``sample_batch`` with the generator of
    ``(seed, step)``; with ``W`` loader workers, worker ``k`` makes steps ``k, k + W, ...`` and the
    loader hands them out in order, so the batches are the same for any number of workers."""

    def __init__(
        self, folder: Path, seed: int, first: int, batch: int, lr_patch: int, points: int, scales: tuple[float, float]
    ):
        super().__init__()
        self.folder, self.seed, self.first = folder, seed, first
        self.sizes = (batch, lr_patch, points, scales)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if info:
            torch.set_num_threads(1)
        train = data.load_split(self.folder, "train")
        step = self.first + worker
        while True:
            yield sample_batch(train, np.random.default_rng([self.seed, step]), *self.sizes)
            step += workers


def batches(args: argparse.Namespace, first: int):
    """An iterator over the batches of steps ``first, first + 1, ...`` (``--workers`` processes make them)."""
    dataset = Batches(args.data, args.seed, first, args.batch, args.lr_patch, args.points, tuple(args.scales))
    if not args.workers:
        return iter(dataset)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=args.workers, pin_memory=args.device.startswith("cuda"), prefetch_factor=4
    )
    return iter(loader)


@torch.no_grad()
def validate(model, windows: np.ndarray, device, scale: float = 4, gap: int = 4) -> dict[str, float]:
    """Mean RGB PSNR on the in-between frames at ``scale``x space, ``gap``x time, vs bicubic + blend (the
    model's train/eval mode is as it was after)."""
    was_training = model.training
    model.eval()
    size = windows.shape[2]
    lr = round(size / scale)
    scores, baseline = [], []
    for window in windows:
        clip = torch.from_numpy(np.array(window[: gap + 1])).permute(0, 3, 1, 2).float().to(device) / 255
        low = ops.degrade(clip, lr)
        state = model.encode_pair(low[:1], low[-1:], model.encode_frame(low[:1]), model.encode_frame(low[-1:]))
        up0, up1 = ops.resize(low[:1], size, size), ops.resize(low[-1:], size, size)
        for k in range(1, gap):
            t = k / gap
            pred = model.query_frame(state, size, size, t).clamp(0, 1)
            scores.append(ops.psnr(pred, clip[k : k + 1]))
            baseline.append(ops.psnr(((1 - t) * up0 + t * up1).clamp(0, 1), clip[k : k + 1]))
    model.train(was_training)
    return {"val_psnr": float(np.mean(scores)), "val_psnr_bicubic_blend": float(np.mean(baseline))}


class Average:
    """An exponential moving average of a model's weights, ``decay`` per step: the weights a run with
    ``--ema`` validates and ships (it smooths the last steps' noise, as SWA does)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values()):
            if mine.is_floating_point():
                mine.lerp_(theirs, 1 - self.decay)
            else:
                mine.copy_(theirs)


def save_state(folder: Path, model, optimizer, info: dict, average: Average | None = None) -> None:
    """Write a resumable training state (safetensors + JSON; nothing pickled)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if average is not None:
        tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in average.model.state_dict().items()}
    optim = optimizer.state_dict()
    for index, slots in optim["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(tensors, str(folder / "state.safetensors.tmp"))
    (folder / "state.safetensors.tmp").replace(folder / "state.safetensors")
    (folder / "state.json").write_text(json.dumps({**info, "param_groups": optim["param_groups"]}, indent=2))


def load_state(folder: Path, model, optimizer, average: Average | None = None) -> dict:
    """Restore what ``save_state`` wrote; returns its info (step, elapsed seconds, log). An average
    the state lacks (a run that adds ``--ema`` on resuming) starts from the restored weights."""
    tensors = load_file(str(folder / "state.safetensors"))
    info = json.loads((folder / "state.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if average is not None:
        saved = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        average.model.load_state_dict(saved or model.state_dict())
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, slot = key.split(".", 2)
            state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": info.pop("param_groups")})
    return info


def warm_start(model: torch.nn.Module, source: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy ``source`` tensors into ``model``: whole where shapes match, the leading slice where the
    model's tensor is smaller in some dimension (a first layer that reads fewer inputs, the dropped
    ones last), nothing otherwise. Returns which names were copied, sliced or left as initialised."""
    report: dict[str, list[str]] = {"copied": [], "sliced": [], "initialised": []}
    target = model.state_dict()
    with torch.no_grad():
        for name, tensor in target.items():
            value = source.get(name)
            if value is not None and value.shape == tensor.shape:
                tensor.copy_(value)
                report["copied"].append(name)
            elif (
                value is not None
                and value.dim() == tensor.dim()
                and all(a <= b for a, b in zip(tensor.shape, value.shape))
            ):
                tensor.copy_(value[tuple(slice(0, size) for size in tensor.shape)])
                report["sliced"].append(name)
            else:
                report["initialised"].append(name)
    return {key: names for key, names in report.items() if key != "copied"} | {"copied": [str(len(report["copied"]))]}


def learning_rate(step: int, progress: float, peak: float, warmup: int = 200) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``peak`` as progress goes 0 -> 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine(peak, progress, floor=0.05)


def code_version() -> str:
    """The git commit of this code (with ``+dirty`` for uncommitted changes), or ``unknown``."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "models"], capture_output=True, text=True).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a VideoINR preset.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="videoinr-s")
    parser.add_argument("--data", type=Path, default=Path("cache/videoinr"), help="built by models.videoinr.data")
    parser.add_argument("--out", type=Path, help="checkpoint path (default models/checkpoints/PRESET)")
    parser.add_argument(
        "--work",
        type=Path,
        help="resumable state folder (default models/checkpoints/training/PRESET, committed so that a later "
        "session resumes where this one stopped)",
    )
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="wall-time budget: stop after it, and decay the learning rate over it",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr-patch", type=int, default=32, help="low-res patch side, pixels")
    parser.add_argument("--points", type=int, default=4096, help="output points per sample")
    parser.add_argument(
        "--scales",
        type=float,
        nargs=2,
        default=[1.0, 4.0],
        metavar=("MIN", "MAX"),
        help="range of the spatial scale drawn per batch (a fine-tune may weight the large scales)",
    )
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--loss", choices=sorted(LOSSES), default="charbonnier", help="per-point loss (mse: what PSNR scores)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--workers", type=int, default=0, help="processes drawing batches (0: in the training loop)")
    parser.add_argument(
        "--stop-after",
        type=float,
        help="leave this run after so many minutes with its state saved, the schedule unchanged (a later run with "
        "the same --steps/--minutes resumes it)",
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate and ship an exponential moving average of the weights with this decay per step (0: off)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore a saved state in --work")
    parser.add_argument(
        "--init",
        help="warm start from this checkpoint (name or path) where shapes allow; ignored when resuming",
    )
    parser.add_argument(
        "--widen",
        action="store_true",
        help="with --init: start as that checkpoint with the preset's wider MLPs (network.widen; same function)",
    )
    parser.add_argument(
        "--init-skip",
        action="append",
        default=[],
        help="with --init: leave tensors whose names start with this prefix as initialised (repeatable)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.scales[0] <= args.scales[1]:
        parser.error(f"--scales needs 1 <= MIN <= MAX, not {args.scales[0]:g} {args.scales[1]:g}")
    if not 0 <= args.ema < 1:
        parser.error(f"--ema must be in [0, 1), not {args.ema:g}")
    if args.widen and not args.init:
        parser.error("--widen needs --init (the checkpoint to widen)")
    return args


def train_step(model, optimizer, batch: Batch, device: torch.device, loss_name: str = "charbonnier") -> torch.Tensor:
    """One optimiser step on ``batch``; returns its loss (a tensor: reading it would wait for a GPU)."""

    def to(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device, non_blocking=True)

    pred = model(to(batch.image0), to(batch.image1), to(batch.points), to(batch.t), to(batch.cell))
    loss = LOSSES[loss_name](pred, to(batch.target))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def start(args: argparse.Namespace, model, optimizer, work: Path) -> tuple[dict, Average | None]:
    """The run's info (step, elapsed seconds, log) and weight average (with ``--ema``): resumed from
    ``work``, warm-started, or new."""
    info = {"step": 0, "elapsed_s": 0.0, "log": []}
    average = Average(model, args.ema) if args.ema else None
    if (work / "state.safetensors").is_file() and not args.fresh:
        info = load_state(work, model, optimizer, average)
        print(f"resumed from {work} at step {info['step']}", flush=True)
    elif args.init and args.widen:
        wide = widen(cast(VideoINR, registry.load(args.init)), model.config.hidden)
        model.load_state_dict(wide.state_dict())
        info["init"] = {"checkpoint": args.init, "widened_to": model.config.hidden}
        print(f"warm start from {args.init}, widened to {model.config.hidden}", flush=True)
        if average is not None:
            average.model.load_state_dict(model.state_dict())
    elif args.init:
        source = {
            name: tensor
            for name, tensor in registry.load(args.init).state_dict().items()
            if not any(name.startswith(prefix) for prefix in args.init_skip)
        }
        info["init"] = {"checkpoint": args.init, "skipped": args.init_skip, **warm_start(model, source)}
        print(f"warm start from {args.init}: {info['init']}", flush=True)
        if average is not None:
            average.model.load_state_dict(model.state_dict())
    info["code_version"] = info.get("code_version") or code_version()  # the code that trains, not at the end
    return info, average


def card(args: argparse.Namespace, argv: list[str] | None, info: dict, metrics: dict, wall: float, device) -> dict:
    """The checkpoint's card: data, commands, steps, wall time, machine, scores, cost, code version."""
    manifest_path = args.data / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    return {
        "preset": args.preset,
        "data": manifest or str(args.data),
        # what built the data (models.videoinr.data records it; a set without a record: its default command)
        "data_command": manifest.get("command", f"python -m models.videoinr.data --out {args.data}"),
        "command": "python -m models.videoinr.train " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "steps": info["step"],
        "wall_time_s": round(wall, 1),
        "device": str(device),
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads".strip(),
        "metrics": {**metrics, "validation": "32 held-out windows, 4x space, 4x time, in-between frames, RGB"},
        **({"ema": args.ema} if args.ema else {}),
        "validation_log": info["log"],
        **({"init": info["init"]} if "init" in info else {}),
        "cost": describe(args.preset),
        "code_version": info["code_version"],
    }


def main(argv: list[str] | None = None) -> int:
    """Train, logging loss and validation PSNR; write the checkpoint and its card."""
    args = parse_args(argv)
    out = args.out or registry.CHECKPOINT_DIR / args.preset
    work = args.work or TRAINING_DIR / args.preset
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = registry.make({"name": "videoinr", "args": asdict(PRESETS[args.preset])}).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    val = data.load_split(args.data, "val")[:32]
    info, average = start(args, model, optimizer, work)
    shipped = average.model if average else model
    budget, step, running = Budget(args.steps, args.minutes, info["elapsed_s"]), info["step"], []
    run_started, stream = time.monotonic(), batches(args, step)
    while not budget.exhausted(step):
        if args.stop_after and time.monotonic() - run_started > 60 * args.stop_after:
            save_state(work, model, optimizer, {**info, "step": step, "elapsed_s": budget.elapsed()}, average)
            print(f"stopped after {args.stop_after} minutes at step {step}; state saved in {work}", flush=True)
            return 0
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, budget.spent(step), args.lr)
        running.append(train_step(model, optimizer, next(stream), device, args.loss))
        if average:
            average.update(model)
        step += 1
        if step % args.log_every == 0:
            lr = optimizer.param_groups[0]["lr"]
            print(
                f"step {step} loss {torch.stack(running).mean().item():.5f} lr {lr:.2e} {budget.elapsed():.0f}s",
                flush=True,
            )
            running = []
        if step % args.val_every == 0 or step == args.steps:
            raw = {"val_psnr_raw": validate(model, val, device)["val_psnr"]} if average else {}
            info["log"].append({"step": step, **validate(shipped, val, device), **raw})
            print(f"step {step} val {info['log'][-1]}", flush=True)
        if step % args.save_every == 0:
            save_state(work, model, optimizer, {**info, "step": step, "elapsed_s": budget.elapsed()}, average)
    if step < args.steps:
        print(f"time budget reached at step {step}", flush=True)
    metrics = validate(shipped, val, device)
    info.update(step=step, elapsed_s=budget.elapsed())
    save_state(work, model, optimizer, info, average)
    path = registry.save(shipped.cpu(), out, card(args, argv, info, metrics, info["elapsed_s"], device))
    print(f"wrote {path} ({metrics})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
