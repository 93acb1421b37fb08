"""The D-NeRV encoder: fit one shared model to a collection of videos and write a ``.dnerv`` file.

Keyframes (each clip's first frame and each video's last) are intra-coded first, per video, and the
model is fitted to the *decoded* keyframes. Rate control toward ``bpp`` (bits per pixel over the
whole collection): the model's 8-bit weights take what they take, the keyframes' CRF is searched
so that they fit the rest (they are most of the bits, as in the paper).

Sections: ``CONF`` (JSON: preset arguments, padded size, the index of videos), ``KEYF`` (an index of
per-video keyframe payloads, so one video decodes without touching the others), ``WGTS``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
import torch

from models.bitstream import container, keyframes, quant
from models.bitstream.rate import BITS_PER_WEIGHT, KEYFRAME_CRFS, WEIGHT_BITS
from models.dnerv.network import PRESETS, DNeRV, DNeRVConfig, clip_plan, clip_times, keyframe_indices, pad_frames
from models.schedule import Budget, cosine, fit_report


@dataclass(frozen=True)
class Video:
    """One video of a collection: a name, RGB frames ``(T, H, W, 3)`` uint8, and its rate."""

    name: str
    frames: np.ndarray
    fps: Fraction


@dataclass(frozen=True)
class DNeRVOptions:
    bpp: float = 0.1
    minutes: float | None = 5.0
    steps: int = 5000
    preset: str = "dnerv-s"
    keyframe_codec: str = "av1"
    lr: float = 2e-3
    seed: int = 0


def padded(height: int, width: int, stages: int) -> tuple[int, int]:
    """The size, rounded up to a multiple of 2^stages (frames are edge-padded to it)."""
    unit = 2**stages
    return math.ceil(height / unit) * unit, math.ceil(width / unit) * unit


def pack_keyframes(payloads: list[bytes]) -> bytes:
    """``u32 n | n x (u32 offset, u32 length) | payloads``."""
    index, offset = [], 4 + 8 * len(payloads)
    for payload in payloads:
        index.append(struct.pack("<II", offset, len(payload)))
        offset += len(payload)
    return struct.pack("<I", len(payloads)) + b"".join(index) + b"".join(payloads)


def code_keyframes(videos: list[Video], clip: int, budget_bits: float, codec: str) -> list[bytes]:
    """Per-video keyframe payloads at the best CRF whose total fits ``budget_bits``."""
    chosen = None
    for crf in KEYFRAME_CRFS:
        payloads = [
            keyframes.encode([v.frames[i] for i in keyframe_indices(len(v.frames), clip)], codec, crf) for v in videos
        ]
        chosen = payloads
        if 8 * sum(len(p) for p in payloads) <= budget_bits:
            break
    return chosen


Clip = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""A training clip on the device: truth ``(L, 3, H, W)``, its two keyframes (padded), its times."""


def training_clips(
    videos: list[Video], payloads: list[bytes], config: DNeRVConfig, padded_size: tuple[int, int], device
) -> list[Clip]:
    """Every clip of every video with the keyframes as the decoder will see them (coded, then decoded)."""
    height, width = videos[0].frames.shape[1:3]
    clips = []
    for video, payload in zip(videos, payloads):
        count = len(video.frames)
        indices = keyframe_indices(count, config.clip)
        keys = np.stack(keyframes.decode(payload, width, height, len(indices)))
        keys = pad_frames(torch.from_numpy(keys).permute(0, 3, 1, 2).float().to(device) / 255, *padded_size)
        truth = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float().to(device) / 255
        for start, stop, end_key in clip_plan(count, config.clip):
            first, last = indices.index(start), indices.index(end_key)
            times = clip_times(start, stop, end_key, config.clip, device)
            clips.append((truth[start:stop], keys[first : first + 1], keys[last : last + 1], times))
    return clips


def train(model: DNeRV, clips: list[Clip], options: DNeRVOptions, size: tuple[int, int], progress) -> int:
    """Fit the shared decoder to random clips within the budget; returns the steps taken."""
    height, width = size
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    rng = np.random.default_rng(options.seed)
    budget, step = Budget(options.steps, options.minutes), 0
    while not budget.exhausted(step):
        for group in optimizer.param_groups:
            group["lr"] = cosine(options.lr, budget.spent(step))
        truth, key0, key1, times = clips[rng.integers(len(clips))]
        pred = model(key0, key1, times)[: truth.shape[0], :, :height, :width]
        loss = torch.mean((pred - truth) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress and step % 10 == 0:
            progress(fit_report(step, options.steps, loss.item(), budget.elapsed()))
    return step


def fit(
    videos: list[Video], options: DNeRVOptions, device="cpu", progress: Callable[[dict], None] | None = None
) -> bytes:
    """Encode a collection (all videos the same size) into D-NeRV bitstream bytes."""
    sizes = {v.frames.shape[1:3] for v in videos}
    if len(sizes) != 1:
        raise ValueError(f"fit: every video of a collection must have the same size, got {sorted(sizes)}")
    torch.manual_seed(options.seed)
    config = PRESETS[options.preset]
    height, width = videos[0].frames.shape[1:3]
    pad_h, pad_w = padded(height, width, len(config.channels) - 1)
    model = DNeRV(**asdict(config)).to(device)
    weights_bits = sum(p.numel() for p in model.parameters()) * BITS_PER_WEIGHT
    total = sum(v.frames.shape[0] for v in videos)
    payloads = code_keyframes(
        videos, config.clip, options.bpp * total * height * width - weights_bits, options.keyframe_codec
    )
    clips = training_clips(videos, payloads, config, (pad_h, pad_w), device)
    steps = train(model, clips, options, (height, width), progress)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    index = [
        {"name": v.name, "frames": int(v.frames.shape[0]), "fps": [v.fps.numerator, v.fps.denominator]} for v in videos
    ]
    config_section = {"preset": asdict(config), "padded": [pad_h, pad_w], "videos": index, "steps": steps}
    fps = videos[0].fps.limit_denominator(1_000_000)
    header = container.Header("dnerv", width, height, total, fps)
    sections = {
        "CONF": json.dumps(config_section).encode(),
        "KEYF": pack_keyframes(payloads),
        "WGTS": quant.pack_state(state, WEIGHT_BITS),
    }
    return container.write(container.Bitstream(header, sections))
