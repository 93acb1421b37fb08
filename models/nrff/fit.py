"""The NRFF encoder: fit the flow/residual field to a video and write a ``.nrff`` bitstream.

Rate control toward ``bpp`` (bits per pixel of the whole video): keyframes get ``KEYFRAME_SHARE`` of
the bits (their CRF is searched), the network's width is the largest whose weights (8 bits each unless
``weight_bits`` says otherwise) fit the rest.
Keyframes are coded first and the network is fitted to the *decoded* keyframes, so the decoder's
references are exactly what the encoder saw. Training as in the paper: Adam 1e-3 with a cosine
schedule, a random subset of rows and columns of a few frames per step, MSE; from ``QAT_FROM`` of the
budget on, the fitting sees the weights rounded as the file stores them (quantisation-aware).

Sections: ``CONF`` (JSON: gop, width, depth, frequencies), ``KEYF`` (keyframes, see
``models/bitstream/keyframes.py``), ``WGTS`` (weights, see ``models/bitstream/quant.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

import numpy as np
import torch
from torch.func import functional_call

from models.bitstream import container, keyframes, quant
from models.bitstream.rate import KEYFRAME_CRFS
from models.nrff.network import NRFF, keyframe_indices, render
from models.schedule import Budget, cosine, fit_report

WEIGHT_BITS = {8: 7.0, 6: 5.0, 5: 4.2}
"""Bits per stored weight a file may use -> the entropy-coded bits per weight the width is chosen with.
8 is the default. Fewer bits buy a wider network in the same size (the last steps are fitted with the
weights rounded as stored): better pictures, slower decoding (docs/codec.md)."""
QAT_FROM = 0.8
"""Part of the fitting budget after which the network is fitted with its weights quantised as stored."""
KEYFRAME_SHARE = 0.6
"""Share of the bit budget given to keyframes (0.6 beat 0.5 in a trial on carphone; docs/codec.md)."""


@dataclass(frozen=True)
class FitOptions:
    """What the encoder aims for and how long it may take."""

    bpp: float = 0.1
    minutes: float | None = 2.0
    steps: int = 2000
    gop: int = 30
    depth: int = 3
    frequencies: int = 8
    keyframe_codec: str = "av1"
    weight_bits: int = 8
    lr: float = 1e-3
    seed: int = 0


def to_tensor(frames: np.ndarray, device) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255


def code_keyframes(frames: np.ndarray, indices: list[int], budget_bits: float, codec: str) -> bytes:
    """The best-quality keyframe payload within ``budget_bits`` (the smallest one if none fits)."""
    best = None
    for crf in KEYFRAME_CRFS:
        payload = keyframes.encode([frames[i] for i in indices], codec, crf)
        best = payload if best is None or len(payload) < len(best) else best
        if 8 * len(payload) <= budget_bits:
            return payload
    return best


def parameter_count(width: int, depth: int, frequencies: int) -> int:
    in_dim = 4 * (1 + 2 * frequencies)
    return (in_dim + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * 8


def choose_width(budget_bits: float, depth: int, frequencies: int, bits_per_weight: float) -> int:
    """The widest network whose weights fit ``budget_bits`` at ``bits_per_weight`` (at least 8)."""
    width = 8
    while width < 512 and parameter_count(width + 4, depth, frequencies) * bits_per_weight <= budget_bits:
        width += 4
    return width


def quantised(model: NRFF, bits: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` with its weights as the file will store them (rows of ``bits``-bit integers), the
    gradients passing straight through."""
    stored = {name: quant.fake_quantize(p, bits) for name, p in model.named_parameters()}
    return partial(functional_call, model, stored)


def fit(
    frames: np.ndarray, fps: Fraction, options: FitOptions, device="cpu", progress: Callable[[dict], None] | None = None
) -> bytes:
    """Encode RGB frames ``(T, H, W, 3)`` uint8 into NRFF bitstream bytes."""
    if options.weight_bits not in WEIGHT_BITS:
        raise ValueError(f"fit: weight_bits must be one of {sorted(WEIGHT_BITS)}, not {options.weight_bits}")
    torch.manual_seed(options.seed)
    count, height, width = frames.shape[:3]
    budget = options.bpp * count * height * width
    indices = keyframe_indices(count, options.gop)
    key_payload = code_keyframes(frames, indices, budget * KEYFRAME_SHARE, options.keyframe_codec)
    keys = to_tensor(np.stack(keyframes.decode(key_payload, width, height, len(indices))), device)
    cost = WEIGHT_BITS[options.weight_bits]
    net_width = choose_width(budget - 8 * len(key_payload), options.depth, options.frequencies, cost)
    model = NRFF(net_width, options.depth, options.frequencies).to(device)
    target = to_tensor(frames, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    rng = np.random.default_rng(options.seed)
    budget, step = Budget(options.steps, options.minutes), 0
    rows_per, cols_per = max(8, height // 4), max(8, width // 4)
    while not budget.exhausted(step):
        for group in optimizer.param_groups:
            group["lr"] = cosine(options.lr, budget.spent(step))
        net = quantised(model, options.weight_bits) if budget.spent(step) >= QAT_FROM else model
        loss = 0.0
        for frame in rng.choice(count, size=min(4, count), replace=False):
            rows = torch.from_numpy(np.sort(rng.choice(height, min(rows_per, height), replace=False))).to(device)
            cols = torch.from_numpy(np.sort(rng.choice(width, min(cols_per, width), replace=False))).to(device)
            pred = render(net, keys, int(frame), count, options.gop, rows, cols)
            truth = target[frame][:, rows][:, :, cols].permute(1, 2, 0).reshape(-1, 3)
            loss = loss + torch.mean((pred - truth) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress and (step % 20 == 0 or step == options.steps):
            progress(fit_report(step, options.steps, loss.item() / min(4, count), budget.elapsed()))
    weights = quant.pack_state(
        {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, options.weight_bits
    )
    config = {
        "gop": options.gop,
        "width": net_width,
        "depth": options.depth,
        "frequencies": options.frequencies,
        "steps": step,
    }
    header = container.Header("nrff", width, height, count, Fraction(fps).limit_denominator(1_000_000))
    sections = {"CONF": json.dumps(config).encode(), "KEYF": key_payload, "WGTS": weights}
    return container.write(container.Bitstream(header, sections))
