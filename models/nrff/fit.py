"""The NRFF encoder: fit the flow/residual field to a video and write a ``.nrff`` bitstream.

Rate control toward ``bpp`` (bits per pixel of the whole video): the GOP length and the keyframes'
share of the bits follow the rate (``SPLITS``), the keyframes' CRF is searched within that share
(leaving room for the narrowest network), and the network's width is the largest whose weights (8
bits each unless ``weight_bits`` says otherwise) fit the rest.
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
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import torch

from models.bitstream import container, keyframes, quant
from models.nrff.network import NRFF, keyframe_indices, predict_frame, render
from models.nrff.residual import CODINGS, ResidualOptions, fit_residual, options_within
from models.schedule import Budget, cosine, fit_report

WEIGHT_BITS = {8: 7.85, 6: 5.9, 5: 4.9}
"""Bits per stored weight a file may use -> the entropy-coded bits per weight the width is chosen with.
Measured on carphone fits (60 frames, 0.025 to 0.2 bpp, 1000 and 5000 steps): 7.59 to 7.83 bits per
8-bit weight, 5.86 per 6-bit, 4.86 to 4.87 per 5-bit: rows scaled to their own range use nearly every
level about equally often. 8 is the default. Fewer bits buy a wider network in the same size (the last
steps are fitted with the weights rounded as stored): better pictures, slower decoding (docs/codec.md)."""
QAT_FROM = 0.8
"""Part of the fitting budget after which the network is fitted with its weights quantised as stored."""
KEYFRAME_CRFS = tuple(range(2, 56, 2))
"""CRFs tried for NRFF's keyframes, best first. The shared ladder stops at CRF 20, where two carphone
keyframes (GOP 30) take less than their share from 0.1 bpp on, the rest going to the network."""
SPLITS = ((0.0375, 10, 0.6, 0.0), (0.075, 5, 0.75, 0.0), (0.15, 3, 0.75, 0.0), (float("inf"), 2, 0.85, 0.0))
"""``(below this bpp, GOP length, keyframes' share, latent residual's share of the bits)``, first
match. Measured with ``python -m bench.nrff_splits`` (5000 steps, the evaluation's 60-frame clips,
docs/codec.md, "Choosing the split with inter-coded keyframes"), PSNR of carphone / bigbuckbunny:

- 0.025 bpp: GOP 30 with 60% 27.69 / 24.76, GOP 10 with 60% 28.23 / 25.42;
- 0.05: GOP 30 29.94 / 26.23, GOP 10 30.80 / 27.48 (75%: - / 27.52), GOP 5 with 75% 31.25 / 28.31;
- 0.1: GOP 10 32.45 / 28.83, GOP 5 33.02 / 30.04 (75%: - / 30.13), GOP 3 with 75% 33.59 / 31.03;
- 0.2: GOP 10 with 30% to the residual 33.92 / 32.55, GOP 5 with 30% 34.62 / 32.86, GOP 3 with 70% and
  15% 35.56 / (75% and 15%) 33.25, GOP 2 with 85% and no residual 35.94 / 33.22.

Since keyframes are inter-coded (``models/bitstream/keyframes.py``) more of them are cheap, and at
every rate the shortest GOP tried won (bigbuckbunny at 0.2 bpp: level, 0.03 dB under GOP 3): the AV1
keyframe stream does more with the bits than the flow network. The rule gives the latent residual
nothing: at 0.2 bpp the splits with one were below or level with GOP 2 without, at three times the
encode time (``residual_share`` still sets it). Short trial fits cannot choose the split per
video: at 200 or 1000 steps the keyframe-heavy splits lead whatever the full fit would show (docs/codec.md)."""

RESIDUAL_TIME = 0.6
"""Part of ``minutes`` the latent residual gets when the time binds (the flow network takes the rest
first; with steps binding, 5000 flow steps and 1000 residual steps took 67 and 172 s on carphone)."""


@dataclass(frozen=True)
class FitOptions:
    """What the encoder aims for and how long it may take."""

    bpp: float = 0.1
    minutes: float | None = 2.0
    steps: int = 2000
    gop: int | None = None
    """Frames per group of pictures (None: by the rate, ``SPLITS``)."""
    keyframe_share: float | None = None
    """Share of the bits for the keyframes (None: by the rate, ``SPLITS``)."""
    residual_share: float | None = None
    """Share of the bits for the latent residual (``models/nrff/residual.py``; 0: none; None: by the rate)."""
    residual_steps: int | None = None
    """Fitting steps of the latent residual (None: a fifth of ``steps``, the measured 5000 to 1000)."""
    depth: int = 3
    frequencies: int = 8
    keyframe_codec: str = "av1"
    weight_bits: int = 8
    lr: float = 1e-3
    seed: int = 0


def split(options: FitOptions) -> tuple[int, float, float]:
    """The GOP length, the keyframes' and the latent residual's shares of the bits: as given, else by
    the rate (``SPLITS``)."""
    gop, share, resid = next(rule[1:] for rule in SPLITS if options.bpp < rule[0])
    given = options.residual_share
    return options.gop or gop, options.keyframe_share or share, resid if given is None else given


def config(options: FitOptions, width: int, steps: int, residual: ResidualOptions | None = None) -> bytes:
    """The CONF section: what the decoder needs to rebuild the networks, and how long they were fitted
    (``residual`` None: no latent residual)."""
    gop = split(options)[0]
    conf: dict[str, object] = {
        "gop": gop,
        "width": width,
        "depth": options.depth,
        "frequencies": options.frequencies,
        "steps": steps,
    }
    if residual is not None:
        conf["residual"] = {
            "levels": residual.levels,
            "width": residual.width,
            "steps": residual.steps,
            "coding": CODINGS[1],
        }
    return json.dumps(conf).encode()


def residual_options(options: FitOptions, bits: float, frames: int) -> ResidualOptions | None:
    """What the latent residual is given (``options_within``), or None: its share then goes to the flow
    network."""
    return options_within(bits, options.residual_steps or max(1, options.steps // 5), frames, options.seed)


def to_tensor(frames: np.ndarray, device) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(0, 3, 1, 2).float() / 255


def code_keyframes(frames: np.ndarray, indices: list[int], budget_bits: float, codec: str) -> bytes:
    """The best-quality keyframe payload within ``budget_bits`` (the smallest one if none fits)."""
    payloads = []
    for crf in KEYFRAME_CRFS:
        payload = keyframes.encode([frames[i] for i in indices], codec, crf)
        if 8 * len(payload) <= budget_bits:
            return payload
        payloads.append(payload)
    return min(payloads, key=len)


def parameter_count(width: int, depth: int, frequencies: int) -> int:
    in_dim = 4 * (1 + 2 * frequencies)
    return (in_dim + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * 8


def quantiser_rows(width: int, depth: int) -> int:
    """Rows ``quant.pack_state`` gives an offset and a step: one per output channel of each weight
    matrix (``depth`` hidden layers and the 8-wide head), one per bias."""
    return depth * width + 8 + (depth + 1)


def overhead_bytes(width: int, depth: int, weight_bits: int, conf_bytes: int) -> int:
    """Bytes a file spends besides its keyframes and its entropy-coded weights: the container's
    header and three section headers, CONF, and the weights section's own tables (bit depth and
    table size, float16 offset and step per row, the range coder's header and one 16-bit count per
    symbol value; a fitted row spans all ``2^bits`` values, so all are counted)."""
    container_bytes = container.HEADER.size + 4 + 3 * container.SECTION.size + conf_bytes
    weights_tables = 5 + 4 * quantiser_rows(width, depth) + 16 + 2 * 2**weight_bits
    return container_bytes + weights_tables


def file_bits(width: int, depth: int, frequencies: int, weight_bits: int, conf_bytes: int) -> float:
    """Expected bits of everything but the keyframes for a network this wide."""
    coded = parameter_count(width, depth, frequencies) * WEIGHT_BITS[weight_bits]
    return 8 * overhead_bytes(width, depth, weight_bits, conf_bytes) + coded + 32  # the coder's last word


def choose_width(budget_bits: float, depth: int, frequencies: int, weight_bits: int, conf_bytes: int) -> int:
    """The widest network (a multiple of 4, at least 8) whose file part fits ``budget_bits``."""
    width = 8
    while width < 512 and file_bits(width + 4, depth, frequencies, weight_bits, conf_bytes) <= budget_bits:
        width += 4
    return width


def fit(
    frames: np.ndarray, fps: Fraction, options: FitOptions, device="cpu", progress: Callable[[dict], None] | None = None
) -> bytes:
    """Encode RGB frames ``(T, H, W, 3)`` uint8 into NRFF bitstream bytes."""
    if options.weight_bits not in WEIGHT_BITS:
        raise ValueError(f"fit: weight_bits must be one of {sorted(WEIGHT_BITS)}, not {options.weight_bits}")
    torch.manual_seed(options.seed)
    count, height, width = frames.shape[:3]
    budget = options.bpp * count * height * width
    gop, share, resid_share = split(options)
    residual = residual_options(options, budget * resid_share, count)
    resid_bits = residual.bits if residual else 0.0
    indices = keyframe_indices(count, gop)
    conf_bytes = len(config(options, 512, options.steps, residual))  # an upper bound
    narrowest = file_bits(8, options.depth, options.frequencies, options.weight_bits, conf_bytes)
    key_budget = min(budget * share, budget - resid_bits - narrowest)
    key_payload = code_keyframes(frames, indices, key_budget, options.keyframe_codec)
    keys = to_tensor(np.stack(keyframes.decode(key_payload, width, height, len(indices))), device)
    network_bits = budget - resid_bits - 8 * len(key_payload)
    net_width = choose_width(network_bits, options.depth, options.frequencies, options.weight_bits, conf_bytes)
    model = NRFF(net_width, options.depth, options.frequencies).to(device)
    target = to_tensor(frames, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    rng = np.random.default_rng(options.seed)
    minutes = options.minutes * (1 - RESIDUAL_TIME) if options.minutes and residual else options.minutes
    budget, step = Budget(options.steps, minutes), 0
    rows_per, cols_per = max(8, height // 4), max(8, width // 4)
    while not budget.exhausted(step):
        for group in optimizer.param_groups:
            group["lr"] = cosine(options.lr, budget.spent(step))
        net = quant.as_stored(model, options.weight_bits) if budget.spent(step) >= QAT_FROM else model
        loss = torch.zeros((), device=device)
        for frame in rng.choice(count, size=min(4, count), replace=False):
            rows = torch.from_numpy(np.sort(rng.choice(height, min(rows_per, height), replace=False))).to(device)
            cols = torch.from_numpy(np.sort(rng.choice(width, min(cols_per, width), replace=False))).to(device)
            pred = render(net, keys, int(frame), count, gop, rows, cols)
            truth = target[frame][:, rows][:, :, cols].permute(1, 2, 0).reshape(-1, 3)
            loss = loss + torch.mean((pred - truth) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress and (step % 20 == 0 or step == options.steps):
            progress(fit_report(step, options.steps, loss.item() / min(4, count), budget.elapsed()))
    weights = quant.pack_module(model, options.weight_bits)
    sections = {"KEYF": key_payload, "WGTS": weights}
    if residual:
        stored = quant.load_module(NRFF(net_width, options.depth, options.frequencies).eval(), weights).to(device)
        with torch.no_grad():  # exactly what the decoder will predict
            prediction = torch.stack([predict_frame(stored, keys, i, count, gop) for i in range(count)])
        left = max(0.05, options.minutes - budget.elapsed() / 60) if options.minutes else None
        sections["RESD"], taken = fit_residual(target, prediction, replace(residual, minutes=left), progress)
        residual = replace(residual, steps=taken)
    header = container.Header("nrff", width, height, count, Fraction(fps).limit_denominator(1_000_000))
    sections = {"CONF": config(options, net_width, step, residual), **sections}
    return container.write(container.Bitstream(header, sections))
