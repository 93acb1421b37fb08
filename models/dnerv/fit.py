"""The D-NeRV encoder: fit one shared model to a collection of videos and write a ``.dnerv`` file.

Keyframes (each clip's first frame and each video's last, ``gop`` frames apart) are coded first, per
video at its own size (the first intra, the rest predicted from earlier ones), and the model is
fitted to the *decoded* keyframes. A keyframe's frame is shown as decoded, so the model is fitted
to the frames between keyframes only. Where the rate gives it a share (``SPLITS``), a latent residual
(``models/nrff/residual.py``: per-frame latent grids, one synthesis network for the library) is then
fitted to what the stored model leaves between keyframes. The keyframe spacing and, with a base, the
keyframes' and the residual's shares of the bits follow the rate (``SPLITS``). Two kinds of library:

- **with a base decoder** (the default, ``base=DEFAULT_BASE``): the shipped base (trained once by
  ``models/dnerv/train.py``) is fine-tuned on the collection, and only the difference of the weights
  is stored, as integers of a per-tensor step, entropy-coded. The last ``QAT_FROM`` part of the
  fitting runs with the difference quantised (straight-through), at the finest step whose coded
  size fits the rest of the budget.
- **self-contained** (``base=None``): the model is fitted from scratch and its 8-bit weights stored;
  the keyframes get what the weights leave.

Sections: ``CONF`` (JSON: format 5, preset arguments, the keyframe spacing ``gop``, the index of
videos with their sizes, the base and its SHA-256, the residual's configuration if any), ``KEYF`` (an
index of per-video keyframe payloads, so one video decodes without touching the others), ``DLTA``
(weight difference from the base) or ``WGTS`` (whole weights), and ``RESD`` (the latent residual of
every frame between keyframes at the library's padded size, each frame its own coded stream).
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from models.bitstream import container, keyframes, quant
from models.bitstream.rate import BITS_PER_WEIGHT, WEIGHT_BITS
from models.codecs import Video
from models.dnerv.base import DEFAULT_BASE, base_path, file_hash, load_base
from models.dnerv.decode import open_library
from models.dnerv.network import (
    PRESETS,
    DNeRV,
    DNeRVConfig,
    between_frames,
    between_mask,
    keyframe_indices,
    pack_plan,
    pad_frames,
    padded,
)
from models.nrff.residual import CODINGS, ResidualOptions, fit_residual, options_within
from models.schedule import Budget, cosine, fit_report

FORMAT = 5
"""The CONF layout written (read by the decoder too: 1, one size for every video and whole weights;
2, no ``gop``, keyframes ``clip`` frames apart; 3, as 4 but every frame, keyframes too, the network's
output; 4, as 5 without a latent residual)."""
RESIDUAL_TIME = 0.3
"""Part of ``minutes`` the latent residual gets when the time binds (the decoder is fitted first)."""
KEYFRAME_CRFS = tuple(range(8, 56, 3))
"""CRFs tried for a library's keyframes, best first."""
SPLITS = ((0.15, 8, 0.7, 0.0), (0.3, 2, 0.75, 0.15), (float("inf"), 2, 0.7, 0.15))
"""``(below this bpp, keyframe spacing, keyframes' share, latent residual's share of the bits)``, the
first that applies; the spacing is capped at the network's ``clip``, the keyframes' share applies to
libraries with a base decoder.
From 0.15 bpp keyframes 2 apart, chosen with ``bench/dnerv_splits.py`` on the evaluation's
collection (docs/codec.md, 1000 steps): at 0.4 bpp 30.83 dB at 0.392 bpp against 27.00 at 0.387 with
spacing 8 and 70%, at 0.2 spacing 2 was 2 dB ahead of spacing 4. The shares were measured with the
base ``dnerv-s-v2`` and keyframes shown as decoded (CONF format 4): 85% below 0.3 bpp (at 0.2: 29.49
dB at 0.1955 bpp; 65% gave 29.06 at 0.1807), 70% from there (at 0.4: 31.67 dB at 0.3824; 85% gave 31.52
at 0.3829). With the latent residual (CONF format 5; a throwaway sweep of ``fit`` with these options,
1000 steps, docs/codec.md): at 0.4 bpp 70% and 15% to the residual 32.32 dB at 0.3887 (20%: 32.16 at
0.3834; 75% and 15%: 32.33 at 0.3945; 60% and 25%: 32.18 at 0.3857), at 0.8 70% and 15% 34.53 at
0.7628 (60% and 20%: 34.21 at 0.7268; without a residual 33.50 at 0.7831), at 0.2 75% and 15% 29.57
at 0.1895 (80% and 10%, too few bits for a residual to pay for its tables, so none: 29.30 at 0.1971).
Below 0.15 bpp the earlier rule, not re-measured: spacing 8 with 70%, whose share and
``finetune_lr`` came from a trial at 0.4 bpp (a 15% share for the difference and 5e-4 gave 24.89 dB,
30% and 5e-4 26.06, 30% and 2e-3 26.70, 50% and 2e-3 26.57)."""
QAT_FROM = 0.7
"""Part of the fitting budget after which the weight difference is fitted quantised."""
DELTA_STEPS = tuple(2.0 ** (-k / 2) for k in range(-10, 25))
"""Quantiser steps tried for the weight difference, relative to each base tensor's RMS, coarse to fine
(from 32 times the RMS, where nearly every difference rounds to 0, so a library lands at its size)."""


@dataclass(frozen=True)
class DNeRVOptions:
    bpp: float = 0.1
    minutes: float | None = 5.0
    steps: int = 5000
    base: str | None = DEFAULT_BASE
    """Shipped base decoder to fine-tune (None: fit ``preset`` from scratch and store its weights)."""
    gop: int | None = None
    """Frames from one keyframe to the next, at most the network's ``clip`` (None: by the rate, ``SPLITS``)."""
    keyframe_share: float | None = None
    """With a base: the keyframes' share of the bits, the rest for the weight difference and the residual
    (None: ``SPLITS``)."""
    residual_share: float | None = None
    """The latent residual's share of the bits (0: none; None: ``SPLITS``)."""
    residual_steps: int | None = None
    """Fitting steps of the latent residual (None: a fifth of ``steps``, as NRFF's)."""
    preset: str = "dnerv-s"
    keyframe_codec: str = "av1"
    lr: float = 2e-3
    finetune_lr: float = 2e-3
    seed: int = 0


def pack_keyframes(payloads: list[bytes]) -> bytes:
    """``u32 n | n x (u32 offset, u32 length) | payloads``."""
    index, offset = [], 4 + 8 * len(payloads)
    for payload in payloads:
        index.append(struct.pack("<II", offset, len(payload)))
        offset += len(payload)
    return struct.pack("<I", len(payloads)) + b"".join(index) + b"".join(payloads)


def split(options: DNeRVOptions, clip: int) -> tuple[int, float, float]:
    """(keyframe spacing, keyframes' share, residual's share): ``options``' own where given, else by the
    rate (``SPLITS``)."""
    gop, share, resid = next(rule[1:] for rule in SPLITS if options.bpp < rule[0])
    if options.gop is not None and not 1 <= options.gop <= clip:
        raise ValueError(f"fit: gop must be 1 to the network's clip of {clip} frames, not {options.gop}")
    if options.residual_share is not None and not 0 <= options.residual_share < 1:
        raise ValueError(f"fit: residual_share must be in [0, 1), not {options.residual_share}")
    resid = resid if options.residual_share is None else options.residual_share
    return options.gop or min(gop, clip), options.keyframe_share or share, resid


def code_keyframes(videos: list[Video], gop: int, budget_bits: float, codec: str) -> list[bytes]:
    """Per-video keyframe payloads at the best CRF whose total fits ``budget_bits``."""
    chosen: list[bytes] = []
    for crf in KEYFRAME_CRFS:
        payloads = [
            keyframes.encode([v.frames[i] for i in keyframe_indices(len(v.frames), gop)], codec, crf) for v in videos
        ]
        chosen = payloads
        if 8 * sum(len(p) for p in payloads) <= budget_bits:
            break
    return chosen


Clip = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""A training pack on the device: truth ``(n, 3, H, W)``, its keyframes (padded), and per slot the
first and last keyframe and the time (``Pack.tensors``). Only slots strictly between their keyframes
count in the loss (a keyframe's frame is shown as decoded)."""


def training_clips(videos: list[Video], payloads: list[bytes], config: DNeRVConfig, gop: int, device) -> list[Clip]:
    """Every pack of every video that holds a frame between keyframes, with the keyframes as the decoder
    will see them (coded, then decoded)."""
    clips = []
    for video, payload in zip(videos, payloads):
        count, height, width = video.frames.shape[:3]
        decoded = np.stack(keyframes.decode(payload, width, height, len(keyframe_indices(count, gop))))
        keys = torch.from_numpy(decoded).permute(0, 3, 1, 2).float().to(device) / 255
        keys = pad_frames(keys, *padded(height, width, len(config.channels) - 1))
        truth = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float().to(device) / 255
        for pack in pack_plan(count, gop, config.clip):
            if not any(pack.between[: pack.stop - pack.start]):
                continue
            clips.append((truth[pack.start : pack.stop], keys[pack.key_lo : pack.key_hi], *pack.tensors(device)))
    return clips


def clip_loss(model: DNeRV, clip: Clip, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """MSE of one pack's frames between keyframes (cropped out of the padded prediction), with
    ``weights`` if given."""
    truth, *inputs = clip
    times = inputs[-1][: truth.shape[0]]
    inside = between_mask(times)
    pred = functional_call(model, weights, tuple(inputs)) if weights else model(*inputs)
    return torch.mean((pred[: truth.shape[0], :, : truth.shape[-2], : truth.shape[-1]][inside] - truth[inside]) ** 2)


def fit_clips(model: DNeRV, clips: list[Clip], options: DNeRVOptions, lr: float, progress, weights=None) -> int:
    """Fit to random clips within the budget; returns the steps taken. ``weights(spent)`` gives the
    weights the forward pass sees at that part of the budget (None: the model's own)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(options.seed)
    budget, step = Budget(options.steps, options.minutes), 0
    while clips and not budget.exhausted(step):
        spent = budget.spent(step)
        for group in optimizer.param_groups:
            group["lr"] = cosine(lr, spent)
        loss = clip_loss(model, clips[rng.integers(len(clips))], weights(spent) if weights else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if progress and step % 10 == 0:
            progress(fit_report(step, options.steps, loss.item(), budget.elapsed()))
    return step


def delta_ints(model: DNeRV, base: dict[str, torch.Tensor], steps: dict[str, float]) -> dict[str, np.ndarray]:
    """The weight difference from ``base`` in integers of each tensor's step."""
    return {
        name: torch.round((p.detach() - base[name]) / steps[name]).cpu().numpy().astype(np.int64)
        for name, p in model.named_parameters()
    }


def choose_steps(model: DNeRV, base: dict[str, torch.Tensor], budget_bits: float) -> dict[str, float]:
    """The finest per-tensor steps (one factor of each base tensor's RMS) whose coded difference fits."""
    rms = {name: max(float(t.pow(2).mean().sqrt()), 1e-4) for name, t in base.items()}
    chosen: dict[str, float] | None = None
    for factor in DELTA_STEPS:
        steps = {name: factor * value for name, value in rms.items()}
        if chosen is None or 8 * len(quant.pack_delta(delta_ints(model, base, steps), steps)) <= budget_bits:
            chosen = steps
        else:
            break
    assert chosen is not None  # the first factor is always taken
    return chosen


def straight_through(weight: torch.Tensor, base: torch.Tensor, step: float) -> torch.Tensor:
    """``base`` plus the difference rounded to ``step`` in the forward pass; the gradient passes as is."""
    delta = weight - base
    return base + delta + (torch.round(delta / step) * step - delta).detach()


def fine_tune(model: DNeRV, clips: list[Clip], options: DNeRVOptions, budget_bits: float, progress):
    """Fine-tune a base decoder; the last part quantisation-aware. Returns (integers, steps, steps taken)."""
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    steps: dict[str, float] = {}

    def quantised(spent: float) -> dict[str, torch.Tensor] | None:
        if spent < QAT_FROM:
            return None
        if not steps:  # chosen once, when the quantised part starts
            steps.update(choose_steps(model, base, budget_bits))
        return {name: straight_through(p, base[name], steps[name]) for name, p in model.named_parameters()}

    taken = fit_clips(model, clips, options, options.finetune_lr, progress, quantised)
    ints = delta_ints(model, base, steps) if steps else None
    if ints is None or 8 * len(quant.pack_delta(ints, steps)) > budget_bits:  # it grew while fitted quantised
        steps = choose_steps(model, base, budget_bits)
        ints = delta_ints(model, base, steps)
    return ints, steps, taken


def fit_library_residual(
    data: bytes, videos: list[Video], gop: int, options: ResidualOptions, progress
) -> tuple[bytes, int]:
    """The RESD payload for the library ``data`` (written without one) and the steps taken: the residual
    fitted to what the decoder's own predictions of every frame between keyframes leave, both edge-padded
    to the library's padded size."""
    library = open_library(data)
    size = library.padded_size
    predictions, targets = [], []
    for index, video in enumerate(videos):
        predictions += [pad_frames(f[None], *size) for _, between, f in library.predictions(index) if between]
        truth = video.frames[between_frames(len(video.frames), gop)]
        targets.append(pad_frames(torch.from_numpy(truth).permute(0, 3, 1, 2).float() / 255, *size))
    return fit_residual(torch.cat(targets), torch.cat(predictions), options, progress)


def residual_entry(options: ResidualOptions) -> dict:
    """The CONF ``residual`` entry of a residual fitted with ``options`` (``steps``: the steps taken)."""
    return {"levels": options.levels, "width": options.width, "steps": options.steps, "coding": CODINGS[1]}


def fit(
    videos: list[Video], options: DNeRVOptions, device="cpu", progress: Callable[[dict], None] | None = None
) -> bytes:
    """Encode a collection (videos of any sizes) into D-NeRV library bytes."""
    if not videos:
        raise ValueError("fit: a library needs at least one video")
    torch.manual_seed(options.seed)
    if options.base:
        model = load_base(options.base).train().to(device)
        args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in model.spec["args"].items()}
        config = DNeRVConfig(**args)
    else:
        config = PRESETS[options.preset]
        model = DNeRV(**asdict(config)).to(device)
    pixels = sum(v.frames[..., 0].size for v in videos)
    budget = options.bpp * pixels
    gop, share, resid_share = split(options, config.clip)
    between = sum(len(between_frames(len(v.frames), gop)) for v in videos)
    residual = options_within(
        budget * resid_share, options.residual_steps or max(1, options.steps // 5), between, options.seed
    )
    resid_bits = residual.bits if residual else 0.0
    if options.base:
        key_budget = budget * share
    else:
        key_budget = budget - sum(p.numel() for p in model.parameters()) * BITS_PER_WEIGHT - resid_bits
    payloads = code_keyframes(videos, gop, key_budget, options.keyframe_codec)
    clips = training_clips(videos, payloads, config, gop, device)
    index: list[dict[str, Any]] = [
        {
            "name": v.name,
            "frames": int(v.frames.shape[0]),
            "fps": [v.fps.numerator, v.fps.denominator],
            "width": int(v.frames.shape[2]),
            "height": int(v.frames.shape[1]),
        }
        for v in videos
    ]
    conf = {"format": FORMAT, "preset": asdict(config), "gop": gop, "videos": index}
    decoder_options = options
    if residual and options.minutes:
        decoder_options = replace(options, minutes=options.minutes * (1 - RESIDUAL_TIME))
    started = time.monotonic()
    if options.base:
        conf["base"] = {"name": options.base, "sha256": file_hash(base_path(options.base))}
        keyframe_bits = 8 * sum(len(p) for p in payloads)
        conf_bytes = len(json.dumps({**conf, "residual": residual_entry(residual)} if residual else conf))
        delta_budget = budget - keyframe_bits - resid_bits - 8 * (conf_bytes + 200)
        ints, steps, taken = fine_tune(model, clips, decoder_options, delta_budget, progress)
        weights = {"DLTA": quant.pack_delta(ints, steps)}
    else:
        taken = fit_clips(model, clips, decoder_options, options.lr, progress)
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        weights = {"WGTS": quant.pack_state(state, WEIGHT_BITS)}
    conf["steps"] = taken
    fps = videos[0].fps.limit_denominator(1_000_000)
    width, height = max(v["width"] for v in index), max(v["height"] for v in index)
    header = container.Header("dnerv", width, height, sum(v["frames"] for v in index), fps)
    sections = {"CONF": json.dumps(conf).encode(), "KEYF": pack_keyframes(payloads), **weights}
    data = container.write(container.Bitstream(header, sections))
    if residual is None:
        return data
    if options.minutes:
        residual = replace(residual, minutes=max(0.05, options.minutes - (time.monotonic() - started) / 60))
    sections["RESD"], taken = fit_library_residual(data, videos, gop, residual, progress)
    conf["residual"] = residual_entry(replace(residual, steps=taken))
    sections["CONF"] = json.dumps(conf).encode()
    return container.write(container.Bitstream(header, sections))
