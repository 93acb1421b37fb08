"""NRFF's latent residual: per-frame multi-resolution latent grids and a small synthesis network
(after Cool-chic, Ladune et al. ICCV 2023, and C3, Kim et al. CVPR 2024).

Each frame has ``levels`` one-channel grids, level ``k`` of ``ceil(H / 2^k) x ceil(W / 2^k)``
integers. The decoder upsamples them bilinearly to the frame, stacks them with the flow prediction
(3 channels) and runs the synthesis: two 1x1 layers of ``width`` channels (GELU), then one 3x3
convolution (edges repeated) to the RGB residual added to the prediction. The grids are fitted with
the rate in the loss, ``MSE + lambda * bits per pixel``, the rate estimated from one zero-mean
Laplace per level (learned scale) with uniform noise standing for the rounding, then with the
rounding itself (straight through) from ``HARD_FROM`` of the budget. ``lambda`` is steered during
fitting (a proportional-integral control of ``log lambda``) so the coded rate of the rounded latents
meets the bits given; if the coded latents still pass them, the fewest of the smallest non-zero
latents are zeroed until they fit. Stored: each level's integers context-coded (``models/bitstream/contexts.py``:
each value under a table chosen by its already-decoded neighbours, one set of tables per level for all
frames), one range-coded stream per frame, so a frame decodes without the others.

Deviations from Cool-chic: no learned autoregressive model (the context is the binned magnitude of
already-decoded neighbours in a 2x2 polyphase order, so decoding stays a few vectorised calls per
level, and the tables are integer, so decoding is exact on any machine) and bilinear upsampling (no
learned filters); the synthesis also sees the prediction (conditional residual coding).

RESD section (little-endian)::

    u32 P | P bytes synthesis weights (models/bitstream/quant.py, 8-bit)
    levels x context tables (models/bitstream/contexts.py; files of container version 3, whose CONF
             has no residual.coding: levels x entropy table, i32 lowest | u32 A | A x u16 counts)
    frames x u32 words per frame | the frames' u32 words, in order
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.bitstream import contexts, entropy, quant
from models.bitstream.container import BitstreamError, check_limits
from models.schedule import Budget, cosine, fit_report

LEVELS = 7
"""Latent grids per frame, full resolution down to 1/64."""
WIDTH = 16
"""Channels of the synthesis network's hidden layers."""
LIMITS = {"levels": (1, 8), "width": (4, 64)}
"""Accepted ranges of the residual's configuration in a file."""
CODINGS = ("histogram", "contexts")
"""How a file's latents are coded (CONF ``residual.coding``; absent: the first): one histogram per
level (container version 3), or context-coded (``models/bitstream/contexts.py``, version 4 on)."""
HARD_FROM = 0.7
"""Part of the budget after which the latents are rounded (straight through) instead of noised."""
LATENT_LIMIT = 1000
"""Latents are clamped to +-this many steps (bounds each level's alphabet)."""
PIXELS_PER_STEP = 400_000
"""Most pixels one fitting step renders (frames are taken in batches below this)."""
WEIGHT_BITS = 8
"""Bits per stored synthesis weight."""
SCALE_START = 0.2
"""Initial scale of each level's Laplace (in quantisation steps): zeros start nearly free."""
SCALE_LR = 0.05
"""Peak learning rate of the Laplace log-scales (they must follow the latents within a few steps)."""
LATENT_LR = 0.05
"""Peak learning rate of the latents (in quantisation steps: they must grow past the rounding soon)."""
LAMBDA_START = 1e-3
"""Initial weight of the rate (MSE per bit per pixel)."""
LAMBDA_GAIN = 0.01
"""Integral gain of the rate control: per step, ``log lambda``'s integral part moves by this times the
error ``log(measured / given bits)`` (clipped to +-1); the measure is ``coded_bits`` of the rounded
latents, smoothed."""
LAMBDA_PROPORTIONAL = 0.5
"""Proportional gain: ``lambda = exp(integral + this * error)``. It damps the overshoot of a purely
integral control, which on bigbuckbunny at 0.2 bpp swung from 3 times the bits given to 70% of them
and left a quarter of them unspent (docs/codec.md)."""
HOLD_UNTIL = 0.3
"""The integral part holds still until the rate first reaches the bits given or this part of the
budget is spent: while the latents grow from zero, a low rate says nothing about lambda (anti-windup)."""
LAMBDA_RANGE = (1e-6, 1e-1)
RATE_SMOOTHING = 0.9
"""The rate control follows an exponential average of the batches' coded bits (weight of the past)."""


def grid_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    return [(-(-height // 2**k), -(-width // 2**k)) for k in range(levels)]


def axis_taps(size_in: int, size_out: int, positions: torch.Tensor):
    """Bilinear taps (half-pixel centres, edges clamped): two source indices and the second's weight."""
    source = ((positions.to(torch.float32) + 0.5) * (size_in / size_out) - 0.5).clamp(min=0)
    first = source.floor().long().clamp(max=size_in - 1)
    return first, (first + 1).clamp(max=size_in - 1), (source - first)


def upsample(grid: torch.Tensor, height: int, width: int, rows: torch.Tensor) -> torch.Tensor:
    """``(N, C, h, w)`` -> ``(N, C, len(rows), width)``: rows ``rows`` of the grid upsampled to ``height x width``."""
    r0, r1, wr = axis_taps(grid.shape[-2], height, rows)
    c0, c1, wc = axis_taps(grid.shape[-1], width, torch.arange(width, device=grid.device))
    wr, wc = wr.to(grid.dtype)[:, None], wc.to(grid.dtype)
    tall = grid[:, :, r0] * (1 - wr) + grid[:, :, r1] * wr
    return tall[..., c0] * (1 - wc) + tall[..., c1] * wc


class Synthesis(nn.Module):
    """Upsampled latents and the prediction ``(N, R, W, levels + 3)`` -> RGB residual ``(N, 3, R', W)``.
    The 1x1 layers are ``Linear`` over channels-last pixels: twice as fast as 1x1 convolutions on CPU."""

    def __init__(self, levels: int = LEVELS, width: int = WIDTH):
        super().__init__()
        self.mix = nn.Sequential(nn.Linear(levels + 3, width), nn.GELU(), nn.Linear(width, width), nn.GELU())
        self.out = nn.Conv2d(width, 3, 3)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # a Conv2d made with a bias

    def forward(self, features: torch.Tensor, top: bool = True, bottom: bool = True) -> torch.Tensor:
        """``top``/``bottom``: the rows reach the frame's edge there (repeated), else one row of context
        on that side is consumed by the 3x3 convolution."""
        hidden = F.pad(self.mix(features).permute(0, 3, 1, 2), (1, 1, int(top), int(bottom)), mode="replicate")
        return self.out(hidden)


def residual_rows(
    synthesis: Callable, latents: list[torch.Tensor], prediction: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """Residual ``(N, 3, stop - start, W)`` of rows ``start:stop``; ``prediction`` is ``(N, 3, H, W)``,
    ``latents`` one ``(N, 1, h_k, w_k)`` grid per level."""
    height, width = prediction.shape[-2:]
    low, high = max(0, start - 1), min(height, stop + 1)
    rows = torch.arange(low, high, device=prediction.device)
    grids = [upsample(grid, height, width, rows)[:, 0] for grid in latents]
    features = torch.stack([*grids, *prediction[:, :, low:high].unbind(1)], -1)
    return synthesis(features, top=start == 0, bottom=stop == height)


def laplace_bits(values: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Bits of integers (or noisy stand-ins) under a zero-mean discretised Laplace, summed."""
    scale = log_scale.clamp(min=-6).exp()
    edge = -values.abs()  # the mass of a bin is symmetric: take the negative side, no cancellation
    top = edge + 0.5  # both branches stay finite, so neither poisons the other's gradient
    upper = torch.where(
        top < 0, 0.5 * torch.exp(top.clamp(max=0) / scale), 1 - 0.5 * torch.exp(-top.clamp(min=0) / scale)
    )
    lower = 0.5 * torch.exp((edge - 0.5) / scale)
    return -torch.log2((upper - lower).clamp_min(1e-9)).sum()


def coded_bits(grids: torch.Tensor) -> float:
    """Bits of one level's integer-valued grids ``(N, 1, h, w)`` coded together under their context
    tables (``contexts.estimate_bits``): the rate control's measure, closer to the file than the Laplace
    estimate."""
    return contexts.estimate_bits(grids[:, 0].long().cpu().numpy())


@dataclass(frozen=True)
class ResidualOptions:
    bits: float
    """Bits the RESD section may take in all."""
    steps: int = 1000
    minutes: float | None = None
    lr: float = 1e-2
    levels: int = LEVELS
    width: int = WIDTH
    seed: int = 0


def synthesis_parameters(levels: int, width: int) -> int:
    """Parameters of ``Synthesis(levels, width)``, counted without building it (building one would
    draw from torch's random generator and change the flow network's initialisation)."""
    return (levels + 3 + 1) * width + (width + 1) * width + width * 3 * 9 + 3


def overhead_bits(options: ResidualOptions, frames: int) -> float:
    """Bits of the section besides its latents' code words: weights (at most 8 bits each plus their
    tables), the context tables of each level (at most 5 bytes per group), a word count per frame."""
    params = synthesis_parameters(options.levels, options.width)
    weights = 8 * (5 + 4 * (2 * options.width + 3 + 4) + 16 + 2 * 2**WEIGHT_BITS) + params * WEIGHT_BITS
    return 32 + weights + options.levels * 8 * (2 + 5 * contexts.GROUPS) + 32 * (frames + 1)


LEAST = 2.0
"""A latent residual is fitted only if its bits are at least this many times its fixed overhead
(synthesis weights and tables); otherwise its share goes elsewhere."""
LEAST_STEPS = 100
"""Nor with fewer fitting steps than this: its rate control cannot settle (at 40 steps on the bundled
sample it spent a tenth of its bits)."""


def options_within(bits: float, steps: int, frames: int, seed: int = 0) -> ResidualOptions | None:
    """What a residual of ``frames`` frames is given, or None when it could not pay for its own tables
    or learn to spend its bits (``LEAST``, ``LEAST_STEPS``) or has no frames."""
    options = ResidualOptions(bits=bits, steps=steps, seed=seed)
    if frames < 1 or bits < LEAST * overhead_bits(options, frames) or steps < LEAST_STEPS:
        return None
    return options


def fit_residual(
    target: torch.Tensor, prediction: torch.Tensor, options: ResidualOptions, progress: Callable | None = None
) -> tuple[bytes, int]:
    """Fit latents and synthesis to ``target - prediction`` (both ``(T, 3, H, W)`` in [0, 1]);
    returns the RESD payload and the steps taken."""
    generator = torch.Generator().manual_seed(options.seed)
    torch.manual_seed(options.seed)
    count, _, height, width = target.shape
    device = target.device
    synthesis = Synthesis(options.levels, options.width).to(device)
    latents = [
        [nn.Parameter(torch.zeros(1, 1, h, w, device=device)) for h, w in grid_sizes(height, width, options.levels)]
        for _ in range(count)
    ]
    log_scales = nn.Parameter(torch.full((options.levels,), math.log(SCALE_START), device=device))
    groups = [
        {"params": list(synthesis.parameters()), "peak": options.lr},
        {"params": [p for frame in latents for p in frame], "peak": LATENT_LR},
        {"params": [log_scales], "peak": SCALE_LR},
    ]
    optimizer = torch.optim.Adam(groups, lr=options.lr)
    latent_bits = options.bits - overhead_bits(options, count)
    if latent_bits <= 0:
        raise ValueError(f"fit_residual: {options.bits:.0f} bits leave nothing for the latents")
    batch = max(1, min(count, PIXELS_PER_STEP // (height * width)))
    budget, step, rate = Budget(options.steps, options.minutes), 0, None
    order: list[int] = []
    log_integral, lam, crossed = math.log(LAMBDA_START), LAMBDA_START, False
    while not budget.exhausted(step):
        spent = budget.spent(step)
        for group in optimizer.param_groups:
            group["lr"] = cosine(group["peak"], spent, floor=0.01)
        if len(order) < batch:
            order = torch.randperm(count, generator=generator).tolist()
        chosen, order = order[:batch], order[batch:]
        hard = spent >= HARD_FROM
        grids, stored_bits = [], 0.0
        for level in range(options.levels):
            values = torch.cat([latents[i][level] for i in chosen])
            noise = values.round() - values if hard else torch.rand_like(values) - 0.5
            grids.append(values + noise.detach())
            stored_bits += coded_bits(values.detach().round()) * count / len(chosen)
        bits = sum(laplace_bits(g, log_scales[k]) for k, g in enumerate(grids)) * count / len(chosen)
        net = quant.as_stored(synthesis, WEIGHT_BITS) if hard else synthesis
        residual = residual_rows(net, grids, prediction[chosen], 0, height)
        mse = torch.mean((prediction[chosen] + residual - target[chosen]) ** 2)
        loss = mse + lam * bits / (count * height * width)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rate = stored_bits if rate is None else RATE_SMOOTHING * rate + (1 - RATE_SMOOTHING) * stored_bits
        error = max(-1.0, min(1.0, math.log(max(rate, 1.0) / latent_bits)))
        crossed = crossed or error >= 0 or spent >= HOLD_UNTIL
        if crossed:
            low, high = (math.log(v) for v in LAMBDA_RANGE)
            log_integral = min(high, max(low, log_integral + LAMBDA_GAIN * error))
        lam = min(LAMBDA_RANGE[1], max(LAMBDA_RANGE[0], math.exp(log_integral + LAMBDA_PROPORTIONAL * error)))
        step += 1
        if progress and (step % 20 == 0 or budget.exhausted(step)):
            report = fit_report(step, options.steps, mse.item(), budget.elapsed())
            progress({**report, "stage": "residual", "bits": stored_bits, "lambda": lam})
    stored = [[grid.detach().cpu() for grid in frame] for frame in latents]
    return pack_within(synthesis, stored, options.bits), step


def pack_within(synthesis: Synthesis, values: list[list[torch.Tensor]], bits: float) -> bytes:
    """The RESD payload with the latents rounded; if it passes ``bits`` (the rate control's estimate is
    not a bound), the fewest of the smallest non-zero latents are zeroed until it fits, their number
    bisected. The smallest are the ones the fit left nearest the rounding's edge: many sit just above
    0.5, where the rate's pull and the distortion's push balance."""
    weights = quant.pack_module(synthesis, WEIGHT_BITS)
    rounded = [[v[0, 0].round().clamp(-LATENT_LIMIT, LATENT_LIMIT).long().numpy() for v in frame] for frame in values]
    payload = pack(weights, rounded)
    if 8 * len(payload) <= bits:
        return payload
    magnitudes = [[v[0, 0].abs().numpy() for v in frame] for frame in values]
    edges = np.sort(np.concatenate([m[r != 0] for frame, rs in zip(magnitudes, rounded) for m, r in zip(frame, rs)]))

    def zeroed(count: int) -> bytes:
        """The payload with the ``count`` smallest non-zero latents zeroed."""
        edge = edges[count - 1]
        ints = [[np.where(m <= edge, 0, r) for m, r in zip(frame, rs)] for frame, rs in zip(magnitudes, rounded)]
        return pack(weights, ints)

    low, high, best = 0, edges.size, zeroed(edges.size)  # all zeroed is kept even if it does not fit
    while high - low > 1:
        middle = (low + high) // 2
        candidate = zeroed(middle)
        if 8 * len(candidate) <= bits:
            high, best = middle, candidate
        else:
            low = middle
    return best


def pack(weights: bytes, ints: list[list[np.ndarray]]) -> bytes:
    """The RESD payload of the packed synthesis ``weights`` and each frame's integer grids."""
    levels = len(ints[0])
    tables = [contexts.fit_tables([frame[k] for frame in ints]) for k in range(levels)]
    models = [contexts.Models(t) for t in tables]
    words = [
        entropy.encode_words([part for k in range(levels) for part in contexts.encode_parts(frame[k], models[k])])
        for frame in ints
    ]
    return b"".join(
        [
            struct.pack("<I", len(weights)),
            weights,
            *(contexts.pack_tables(t) for t in tables),
            np.array([w.size for w in words], dtype="<u4").tobytes(),
            *(w.tobytes() for w in words),
        ]
    )


@dataclass
class Residual:
    """A parsed RESD section: the synthesis and each frame's coded latents, decoded on demand.
    ``models``: one per level, context-coded (``CODINGS[1]``); ``tables``: one histogram per level
    (files written before, ``CODINGS[0]``)."""

    synthesis: Synthesis
    words: list[np.ndarray]
    height: int
    width: int
    models: list[contexts.Models] | None = None
    tables: list[tuple[int, np.ndarray]] | None = None

    def add(self, index: int, prediction: torch.Tensor, rows_per_chunk: int = 64) -> torch.Tensor:
        """``prediction`` ``(1, 3, H, W)`` plus frame ``index``'s residual, ``rows_per_chunk`` rows at a
        time (bounds the synthesis' memory on large frames); not clamped."""
        latents, height = self.latents(index), prediction.shape[-2]
        parts = [
            residual_rows(self.synthesis, latents, prediction, start, min(height, start + rows_per_chunk))
            for start in range(0, height, rows_per_chunk)
        ]
        return prediction + torch.cat(parts, 2)

    def latents(self, index: int) -> list[torch.Tensor]:
        """Frame ``index``'s grids, ``(1, 1, h_k, w_k)`` float32 each."""
        sizes = grid_sizes(self.height, self.width, len(self.models or self.tables or ()))
        if self.models is not None:
            reader = entropy.Reader(self.words[index])
            values = [contexts.decode_grid(reader, m, h, w) for m, (h, w) in zip(self.models, sizes)]
        else:
            parts = [(h * w, low, counts) for (h, w), (low, counts) in zip(sizes, self.tables or ())]
            values = entropy.decode_words(self.words[index], parts)
        return [torch.from_numpy(v.astype(np.float32)).view(1, 1, h, w) for v, (h, w) in zip(values, sizes)]


def check_config(entry) -> None:
    """A CONF ``residual`` entry: an object whose ``levels`` and ``width`` are within ``LIMITS`` and whose
    ``coding`` (absent: the first) is one of ``CODINGS``; BitstreamError otherwise."""
    if not isinstance(entry, dict):
        raise BitstreamError("read_config: residual is not an object")
    check_limits(entry, LIMITS, "residual ")
    coding = entry.get("coding", CODINGS[0])
    if coding not in CODINGS:
        raise BitstreamError(f"read_config: residual coding {coding!r} is not one of {CODINGS}")


def unpack(payload: bytes, config: dict, frames: int, height: int, width: int) -> Residual:
    """Parse a RESD section for a file of ``frames`` frames of ``height x width``; BitstreamError if malformed."""
    if len(payload) < 4:
        raise BitstreamError("residual.unpack: truncated")
    (size,) = struct.unpack_from("<I", payload)
    if size > len(payload) - 4:
        raise BitstreamError("residual.unpack: the synthesis weights pass the section")
    synthesis = quant.load_module(Synthesis(config["levels"], config["width"]).eval(), payload[4 : 4 + size])
    offset, tables, models = 4 + size, [], []
    context_coded = config.get("coding", CODINGS[0]) == CODINGS[1]
    for _ in range(config["levels"]):
        if context_coded:
            level_tables, offset = contexts.read_tables(payload, offset)
            models.append(contexts.Models(level_tables))
        else:
            low, counts, offset = entropy.read_table(payload, offset)
            tables.append((low, counts))
    if len(payload) < offset + 4 * frames:
        raise BitstreamError("residual.unpack: truncated word counts")
    counts = np.frombuffer(payload, "<u4", frames, offset).astype(np.int64)
    offset += 4 * frames
    if 4 * int(counts.sum()) != len(payload) - offset:
        raise BitstreamError("residual.unpack: the word counts do not match the section's size")
    starts = offset + 4 * np.concatenate([[0], np.cumsum(counts)[:-1]])
    words = [np.frombuffer(payload, "<u4", int(n), int(s)) for s, n in zip(starts, counts)]
    return Residual(synthesis, words, height, width, models=models or None, tables=tables or None)
