"""D-NeRV: one shared neural representation for many clips (He et al., "Towards Scalable Neural
Representation for Diverse Videos", CVPR 2023).

Each frame is decoded from its clip's two keyframes (the clip's first frame and the next clip's
first frame, ``gop`` frames apart, the library's choice) and the clip-relative time ``t`` in [0, 1];
the network decodes ``clip`` frames per call, of one clip or of several shorter ones (``pack_plan``):
- a content encoder turns each keyframe into multi-scale features (shared by every clip);
- the motion-aware decoder starts from the coarsest keyframe features, modulated by a positional
  encoding of ``t``; at each scale a head predicts the forward and backward flows, the keyframe
  features are backward-warped and fused as ``(1 - t) * fwd + t * bwd``, spatially-adaptive fusion
  (SAF) modulates the decoder features ``x * (gamma + 1) + beta``, and the global temporal MLP
  (GTMLP) mixes each channel across the clip's frames (a grouped 1x1 convolution), residually;
  conv + PixelShuffle + GELU go up one scale;
- the RGB head sees the keyframes warped by the finest flows and predicts a residual over their
  fused colours.

Deviations: the decoder's first map comes from the keyframes' coarsest features rather than from
an MLP of t alone (fewer parameters; t still enters through FiLM); content features come from a
2-D conv stack per keyframe (the paper's Conv3d stem sees one frame here anyway).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models import ops
from models.registry import register


@dataclass(frozen=True)
class DNeRVConfig:
    """D-NeRV's constructor arguments; ``asdict`` is what a library's CONF section records."""

    channels: tuple[int, ...]
    """Decoder width per scale, coarse to fine."""
    content: tuple[int, ...]
    """Keyframe encoder width per scale, fine to coarse."""
    clip: int = 8
    """Frames per clip between two keyframes."""
    frequencies: int = 8
    """Sine/cosine frequencies of the time encoding."""


PRESETS: dict[str, DNeRVConfig] = {
    "dnerv-s": DNeRVConfig(channels=(32, 24, 16, 12), content=(12, 16, 24, 32)),
    "dnerv-m": DNeRVConfig(channels=(96, 64, 48, 32), content=(24, 32, 48, 64)),
}
"""Named configurations."""
LIMITS = {"stages": (1, 6), "width": (4, 256), "clip": (1, 32), "frequencies": (1, 16)}
"""Accepted ranges of a configuration read from a file."""


def time_encoding(t: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``(L,)`` times -> ``(L, 1 + 2F)``: t, then sin/cos of 2^k * pi * t."""
    scales = (2.0 ** torch.arange(frequencies, device=t.device, dtype=t.dtype)) * math.pi
    angles = t[:, None] * scales
    return torch.cat([t[:, None], angles.sin(), angles.cos()], 1)


class ContentEncoder(nn.Module):
    """Keyframe ``(B, 3, H, W)`` -> features at H, H/2, ..., H/2^S (fine to coarse)."""

    def __init__(self, widths: list[int]):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = [F.gelu(self.stem(image - 0.5))]
        for conv in self.down:
            feats.append(F.gelu(conv(feats[-1])))
        return feats


@register("dnerv")
class DNeRV(nn.Module):
    """Motion-aware decoder of a clip from its two keyframes (see the module docstring)."""

    spec: dict[str, Any]  # set by models.registry: the constructor arguments a checkpoint stores

    def __init__(self, channels: list[int], content: list[int], clip: int = 8, frequencies: int = 8):
        super().__init__()
        if len(channels) != len(content):
            raise ValueError("DNeRV: channels and content need one width per scale")
        self.clip, self.frequencies, self.stages = clip, frequencies, len(channels) - 1
        self.encoder = ContentEncoder(content)
        fine_to_coarse = content  # content[s] is at scale s (H / 2^s)
        scales = list(range(self.stages, -1, -1))  # decoder goes coarse -> fine
        self.stem = nn.Conv2d(2 * fine_to_coarse[-1], channels[0], 1)
        self.film = nn.Sequential(nn.Linear(1 + 2 * frequencies, 64), nn.GELU(), nn.Linear(64, 2 * channels[0]))
        self.flow, self.saf, self.gtmlp, self.up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, s in enumerate(scales):
            c = channels[i]
            head = nn.Conv2d(c, 4, 3, padding=1)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)  # type: ignore[arg-type]  # made with a bias
            self.flow.append(head)
            self.saf.append(nn.Conv2d(fine_to_coarse[s], 2 * c, 1))
            self.gtmlp.append(nn.Conv2d(c * clip, c * clip, 1, groups=c))
            if s > 0:
                self.up.append(nn.Conv2d(c, 4 * channels[i + 1], 3, padding=1))
        self.rgb = nn.Conv2d(channels[-1] + 6, 3, 3, padding=1)
        nn.init.zeros_(self.rgb.weight)
        nn.init.zeros_(self.rgb.bias)  # type: ignore[arg-type]

    def temporal_mix(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """GTMLP: mix every channel across the clip's ``L`` frames ``(L, C, h, w)``, residually."""
        frames, channels, h, w = x.shape
        grouped = x.permute(1, 0, 2, 3).reshape(1, channels * frames, h, w)
        mixed = self.gtmlp[index](grouped).view(channels, frames, h, w).permute(1, 0, 2, 3)
        return x + mixed

    def forward(self, keys: torch.Tensor, first: torch.Tensor, last: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Frames ``(L, 3, H, W)``: frame ``i`` at time ``t[i]`` between keyframes ``keys[first[i]]`` and
        ``keys[last[i]]`` (``keys`` ``(K, 3, H, W)``, each encoded once). The ``L = clip`` frames of one
        call may belong to several pairs of keyframes (``pack_plan``); the GTMLP mixes them all."""
        frames = t.shape[0]
        feats = self.encoder(keys)
        c0, c1 = [f[first] for f in feats], [f[last] for f in feats]
        tt = t.view(frames, 1, 1, 1)
        x = self.stem(torch.cat([c0[-1], c1[-1]], 1))
        gamma, beta = self.film(time_encoding(t, self.frequencies)).chunk(2, 1)
        x = x * (1 + gamma[..., None, None]) + beta[..., None, None]
        for i, s in enumerate(range(self.stages, -1, -1)):
            flows = self.flow[i](x)
            fwd = ops.backward_warp(c0[s], flows[:, :2])
            bwd = ops.backward_warp(c1[s], flows[:, 2:])
            g, b = self.saf[i]((1 - tt) * fwd + tt * bwd).chunk(2, 1)
            x = self.temporal_mix(i, x * (g + 1) + b)
            if s > 0:
                x = F.gelu(F.pixel_shuffle(self.up[i](x), 2))
        rgb0 = ops.backward_warp(keys[first], flows[:, :2])
        rgb1 = ops.backward_warp(keys[last], flows[:, 2:])
        return (1 - tt) * rgb0 + tt * rgb1 + self.rgb(torch.cat([x, rgb0 - 0.5, rgb1 - 0.5], 1))


def clip_plan(frames: int, gop: int) -> list[tuple[int, int, int]]:
    """Clips of a video, ``gop`` frames each: (first frame, end frame exclusive, end keyframe index).

    A clip's keyframes are its first frame and the next clip's first frame (the last clip ends on
    the video's last frame). ``gop`` is at most the network's ``clip``; ``pack_plan`` puts the frames
    of several short clips into one call of the network.
    """
    return [(s, min(s + gop, frames), min(s + gop, frames - 1)) for s in range(0, frames, gop)]


def keyframe_indices(frames: int, gop: int) -> list[int]:
    """Every keyframe of a video: each clip's first frame, and the last frame."""
    return sorted({s for s, _, _ in clip_plan(frames, gop)} | {frames - 1})


def between_mask(times: torch.Tensor) -> torch.Tensor:
    """Per slot: whether a frame at clip-relative time ``times`` lies strictly between its two
    keyframes (0 and 1 are the keyframes themselves, which a library shows as decoded)."""
    return (times > 0) & (times < 1)


def between_frames(frames: int, gop: int) -> list[int]:
    """A video's frames strictly between two keyframes, in order: the ones the network decodes (CONF
    format 4 on) and a latent residual corrects (format 5)."""
    keys = set(keyframe_indices(frames, gop))
    return [j for j in range(frames) if j not in keys]


@dataclass(frozen=True)
class Pack:
    """``clip`` consecutive frames of a video decoded in one call: frames ``start..stop``, their
    keyframes ``keys[key_lo:key_hi]`` (indices into ``keyframe_indices``), and per slot the first and
    last keyframe (relative to ``key_lo``) and the time; slots past ``stop`` repeat the last frame's."""

    start: int
    stop: int
    key_lo: int
    key_hi: int
    first: tuple[int, ...]
    last: tuple[int, ...]
    times: tuple[float, ...]

    @property
    def between(self) -> tuple[bool, ...]:
        """Per slot: whether its frame lies strictly between its two keyframes (else it is one of them)."""
        return tuple(between_mask(torch.tensor(self.times)).tolist())

    def tensors(self, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(first, last, times) as tensors for ``DNeRV.forward``."""
        return (
            torch.tensor(self.first, device=device),
            torch.tensor(self.last, device=device),
            torch.tensor(self.times, device=device),
        )


def pack_plan(frames: int, gop: int, clip: int) -> list[Pack]:
    """A video's frames in packs of ``clip`` (each frame between its clip's two keyframes, ``gop``
    apart). With ``gop == clip`` a pack is exactly one clip (the layout of libraries before ``gop``)."""
    indices = keyframe_indices(frames, gop)
    slots = []  # (key a, key b, t) of every frame
    for start, stop, end_key in clip_plan(frames, gop):
        span = max(1, end_key - start)
        a, b = indices.index(start), indices.index(end_key)
        slots += [(a, b, (j - start) / span) for j in range(start, stop)]
    packs = []
    for start in range(0, frames, clip):
        part = slots[start : start + clip]
        part += [part[-1]] * (clip - len(part))
        lo, hi = min(s[0] for s in part), max(s[1] for s in part) + 1
        packs.append(
            Pack(
                start,
                min(start + clip, frames),
                lo,
                hi,
                tuple(s[0] - lo for s in part),
                tuple(s[1] - lo for s in part),
                tuple(s[2] for s in part),
            )
        )
    return packs


def show_keyframes(frames: torch.Tensor | None, keys: torch.Tensor, pack: Pack) -> torch.Tensor:
    """A pack's decoded frames ``(clip, 3, H, W)`` with every keyframe's slot replaced by that keyframe
    as decoded (``keys``: the pack's ``keys[key_lo:key_hi]``); the network's output stays between them.
    ``frames`` None: a pack of keyframes only, for which the network need not run."""
    own = [first if t == 0 else last for first, last, t in zip(pack.first, pack.last, pack.times)]
    if frames is None:
        return keys[own]
    out = frames.clone()
    for slot, inside in enumerate(pack.between):
        if not inside:
            out[slot] = keys[own[slot]]
    return out


def padded(height: int, width: int, stages: int) -> tuple[int, int]:
    """The size, rounded up to a multiple of 2^stages (frames are edge-padded to it)."""
    unit = 2**stages
    return math.ceil(height / unit) * unit, math.ceil(width / unit) * unit


def pad_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(T, 3, h, w)`` -> ``(T, 3, height, width)`` by repeating the right and bottom edges."""
    return F.pad(frames, (0, width - frames.shape[-1], 0, height - frames.shape[-2]), mode="replicate")
