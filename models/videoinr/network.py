"""VideoINR: a video implicit neural representation for continuous space-time super-resolution.

Chen et al., "VideoINR: Learning Video Implicit Neural Representation for Continuous Space-Time
Super-Resolution", CVPR 2022. Two low-res frames are encoded once; then any output point
``(x, y, t)`` is answered by three MLPs: a SpatialINR (nearest low-res feature + relative coordinate
-> high-res feature), a TemporalINR (-> motion flows from the point to each input frame at time t)
and a decoder that reads features and colours backward-warped by those flows and returns RGB.

Two-stage interface (as LIIF's ``gen_feat``/``query_rgb``): ``encode_frame`` once per frame (the
caller caches it, so a frame shared by two pairs is encoded once), ``encode_pair`` once per pair,
then ``query``/``query_frame`` for any number of (output size, t), in bounded chunks of points.

Deviations from the paper, and why:
- No deformable convolutions (DCNv2 alignment, deformable ConvLSTM): a coarse-to-fine flow
  estimator at low resolution aligns each frame's features to the other with ``grid_sample``. It
  runs on CPU, exports to ONNX (GridSample, opset 16), and needs no custom CUDA build.
- The TemporalINR predicts a residual on top of the low-res pair flow sampled at the query point,
  scaled by t (flow to frame 0) and 1 - t (flow to frame 1): linear motion is the prior, so at t = 0
  the point reads frame 0 where it is. The paper's MLP predicts the flows from scratch.
- The decoder output is a residual over an occlusion-aware blend of the two backward-warped,
  bicubically sampled input colours, weights ``(1 - t) * v0`` and ``t * v1`` with learned
  visibilities (Super SloMo, Jiang et al. CVPR 2018). At init the model is "bicubic + warped blend",
  which converges in CPU-hours instead of GPU-days, and t = 0 / t = 1 reproduce the input frames.
- The SpatialINR also reads the cell size (output pixel size in low-res pixels), as LIIF does,
  because one model serves every scale in [1, 4].
- MLPs use GELU by default; SIREN (sine, w0 = 30, the paper's choice) is kept as ``activation="sine"``.
  Sine MLPs need their special initialisation and small learning rates; GELU trains stably with
  Adam at our short budgets and leaves the residual heads near zero at init.
- Fewer, narrower layers in ``videoinr-s`` (0.37M parameters, CPU-trainable). ``videoinr-m`` (6.5M)
  is near the paper's 11.31M less what its DCN alignment and ConvLSTM take (7.3M), with a deeper
  encoder and 256-wide MLPs instead.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models import ops
from models.registry import register

PRESETS: dict[str, dict] = {
    "videoinr-s": {"channels": 32, "encoder_blocks": 4, "motion_channels": 32, "fusion_blocks": 1, "hidden": 64},
    "videoinr-m": {"channels": 64, "encoder_blocks": 30, "motion_channels": 128, "fusion_blocks": 10, "hidden": 256},
}
"""Named constructor arguments; ``videoinr-s`` trains on 2 CPU cores, ``videoinr-m`` is for GPUs."""


class ResBlock(nn.Module):
    """conv-LeakyReLU-conv with an identity skip (EDSR style, no batch norm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


def conv_stack(in_channels: int, channels: int, blocks: int) -> nn.Sequential:
    """3x3 conv to ``channels`` then ``blocks`` residual blocks."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.1), *[ResBlock(channels) for _ in range(blocks)]
    )


class Sine(nn.Module):
    """SIREN activation sin(w0 * x) (Sitzmann et al. 2020)."""

    def __init__(self, w0: float = 30.0):
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


def mlp(in_dim: int, hidden: list[int], out_dim: int, activation: str, zero_last: bool = False):
    """Linear layers with ``activation`` between them; ``zero_last`` starts a residual head at 0."""
    dims = [in_dim, *hidden, out_dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(a, b)
        if activation == "sine":
            bound = 1.0 / a if i == 0 else math.sqrt(6.0 / a) / 30.0
            nn.init.uniform_(linear.weight, -bound, bound)
        layers.append(linear)
        if i < len(dims) - 2:
            layers.append(Sine() if activation == "sine" else nn.GELU())
    if zero_last:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class MotionEstimator(nn.Module):
    """Coarse-to-fine bidirectional flow between two frames' features, at low resolution.

    Returns ``(B, 4, h, w)``: flow 0->1 (where a frame-0 pixel is in frame 1) then flow 1->0.
    """

    def __init__(self, channels: int, width: int, levels: int = 3):
        super().__init__()
        self.levels = levels
        self.refiners = nn.ModuleList()
        for _ in range(levels):
            head = nn.Sequential(
                nn.Conv2d(4 * channels + 4, width, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(width, width, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(width, 4, 3, padding=1),
            )
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
            self.refiners.append(head)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> torch.Tensor:
        pyramid = [(feat0, feat1)]
        for _ in range(self.levels - 1):
            f0, f1 = pyramid[-1]
            pyramid.append((F.avg_pool2d(f0, 2, ceil_mode=True), F.avg_pool2d(f1, 2, ceil_mode=True)))
        flow = None
        for level in reversed(range(self.levels)):
            f0, f1 = pyramid[level]
            h, w = f0.shape[-2:]
            flow = f0.new_zeros(f0.shape[0], 4, h, w) if flow is None else ops.resize_flow(flow, h, w)
            warped1 = ops.backward_warp(f1, flow[:, :2])
            warped0 = ops.backward_warp(f0, flow[:, 2:])
            flow = flow + self.refiners[level](torch.cat([f0, warped1, f1, warped0, flow], dim=1))
        return flow


@dataclass
class PairState:
    """Everything a query needs from one encoded input pair (all low-res, ``(B, C, h, w)``)."""

    images: torch.Tensor  # (B, 6, h, w): frame 0 RGB then frame 1 RGB, in [0, 1]
    features: torch.Tensor  # (B, 3C, h, w): aligned frame-0, fused middle, aligned frame-1
    flows: torch.Tensor  # (B, 4, h, w): flow 0->1 then 1->0, low-res pixels
    warp_features: torch.Tensor  # (2B, C, h, w): aligned frame-0 / frame-1 features, what flows warp
    warp_images: torch.Tensor  # (2B, 3, h, w): frame 0 / frame 1 RGB, interleaved like warp_features

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[-2], self.images.shape[-1]


@register("videoinr")
class VideoINR(nn.Module):
    """VideoINR (Chen et al., CVPR 2022) with flow-based alignment; see the module docstring."""

    def __init__(
        self,
        channels: int = 32,
        encoder_blocks: int = 4,
        motion_channels: int = 32,
        fusion_blocks: int = 1,
        hidden: int = 64,
        activation: str = "gelu",
    ):
        super().__init__()
        c, h = channels, hidden
        self.spec = {
            "name": "videoinr",
            "args": {
                "channels": channels,
                "encoder_blocks": encoder_blocks,
                "motion_channels": motion_channels,
                "fusion_blocks": fusion_blocks,
                "hidden": hidden,
                "activation": activation,
            },
        }
        self.channels = c
        self.encoder = conv_stack(3, c, encoder_blocks)
        self.motion = MotionEstimator(c, motion_channels)
        self.align = nn.ModuleList([conv_stack(2 * c, c, fusion_blocks) for _ in range(2)])
        self.fuse = conv_stack(2 * c, c, fusion_blocks)
        self.spatial = mlp(3 * c + 6 + 2 + 2 + 1, [h, h, h], h, activation)
        self.temporal = mlp(h + 4 + 1, [h // 2, h // 2], 6, activation, zero_last=True)
        self.decoder = mlp(h + 2 * c + 6 + 1, [h, h], 3, activation, zero_last=True)

    def encode_frame(self, image: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``(B, C, h, w)`` of an RGB frame ``(B, 3, h, w)`` in [0, 1]."""
        return self.encoder(image - 0.5)

    def encode_pair(
        self, image0: torch.Tensor, image1: torch.Tensor, feat0: torch.Tensor, feat1: torch.Tensor
    ) -> PairState:
        """Align and fuse two frames' features (the encoder stage shared by all queries)."""
        flows = self.motion(feat0, feat1)
        aligned0 = feat0 + self.align[0](torch.cat([feat0, ops.backward_warp(feat1, flows[:, :2])], 1))
        aligned1 = feat1 + self.align[1](torch.cat([feat1, ops.backward_warp(feat0, flows[:, 2:])], 1))
        middle = self.fuse(torch.cat([aligned0, aligned1], 1))
        return PairState(
            torch.cat([image0, image1], 1),
            torch.cat([aligned0, middle, aligned1], 1),
            flows,
            torch.stack([aligned0, aligned1], 1).flatten(0, 1),  # built once per pair, not per query chunk
            torch.stack([image0, image1], 1).flatten(0, 1),
        )

    def query(self, state: PairState, points: torch.Tensor, t: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, N, 3)`` at low-res pixel-unit points ``(B, N, 2)``, times ``t`` ``(B,)`` in [0, 1].

        ``cell`` ``(B, 2)`` is the output pixel's (width, height) in low-res pixels (1 / scale).
        """
        batch, n = points.shape[:2]
        h, w = state.size
        c = self.channels
        tt = t.to(points.dtype).view(batch, 1, 1).expand(batch, n, 1)
        centres = ops.nearest_centres(points, h, w)
        near_feat = ops.sample_points(state.features, centres, "nearest")
        near_rgb = ops.sample_points(state.images, centres, "nearest")
        cells = cell.to(points.dtype).view(batch, 1, 2).expand(batch, n, 2)
        z = self.spatial(torch.cat([near_feat, near_rgb - 0.5, points - centres, cells, tt], -1))

        prior = ops.sample_points(state.flows, points)
        motion = self.temporal(torch.cat([z, prior, tt], -1))
        point0 = points + tt * (prior[..., 2:4] + motion[..., 0:2])
        point1 = points + (1 - tt) * (prior[..., 0:2] + motion[..., 2:4])

        both = torch.stack([point0, point1], 1).flatten(0, 1)  # (2B, N, 2)
        warped_feat = ops.sample_points(state.warp_features, both).view(batch, 2, n, c)
        warped_rgb = ops.sample_points(state.warp_images, both, "bicubic").view(batch, 2, n, 3)

        vis = torch.sigmoid(motion[..., 4:6])
        weight0, weight1 = (1 - tt) * vis[..., :1], tt * vis[..., 1:]
        base = (weight0 * warped_rgb[:, 0] + weight1 * warped_rgb[:, 1]) / (weight0 + weight1).clamp_min(1e-6)
        decoder_in = [z, warped_feat[:, 0], warped_feat[:, 1], warped_rgb[:, 0] - 0.5, warped_rgb[:, 1] - 0.5, tt]
        return base + self.decoder(torch.cat(decoder_in, -1))

    def query_frame(self, state: PairState, height: int, width: int, t: float, chunk: int = 65536) -> torch.Tensor:
        """The whole ``(B, 3, height, width)`` output frame at time ``t``, ``chunk`` points at a time."""
        h, w = state.size
        points = ops.pixel_centres(
            height, width, h / height, w / width, device=state.images.device, dtype=state.images.dtype
        )
        return (
            self.query_points(state, points, t, (w / width, h / height), chunk)
            .transpose(1, 2)
            .reshape(state.images.shape[0], 3, height, width)
        )

    def query_points(
        self, state: PairState, points: torch.Tensor, t: float, cell: tuple[float, float], chunk: int = 65536
    ) -> torch.Tensor:
        """RGB ``(B, N, 3)`` at the same points ``(N, 2)`` for every batch item, in chunks."""
        batch = state.images.shape[0]
        like = state.images
        times = like.new_full((batch,), float(t))
        cells = like.new_tensor(cell).expand(batch, 2)
        out = [self.query(state, part.unsqueeze(0).expand(batch, -1, -1), times, cells) for part in points.split(chunk)]
        return torch.cat(out, 1)

    def forward(
        self, image0: torch.Tensor, image1: torch.Tensor, points: torch.Tensor, t: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """Training entry: encode both frames and query ``points`` ``(B, N, 2)`` at ``t`` ``(B,)``."""
        state = self.encode_pair(image0, image1, self.encode_frame(image0), self.encode_frame(image1))
        return self.query(state, points, t, cell)


def count_macs(model: VideoINR, lr_size: int = 32, scale: float = 4.0) -> dict[str, float]:
    """Multiply-accumulates: per low-res pixel (per frame, per pair) and per output pixel (queries)."""
    totals = {"value": 0}

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            totals["value"] += output.numel() * module.in_channels // module.groups * k
        elif isinstance(module, nn.Linear):
            totals["value"] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    image = torch.rand(1, 3, lr_size, lr_size)
    out_size = int(lr_size * scale)
    with torch.no_grad():
        feat = model.encode_frame(image)
        per_frame, totals["value"] = totals["value"], 0
        state = model.encode_pair(image, image, feat, feat)
        per_pair, totals["value"] = totals["value"], 0
        model.query_frame(state, out_size, out_size, 0.5)
        per_query = totals["value"]
    for handle in handles:
        handle.remove()
    return {
        "encoder_per_lr_pixel": per_frame / lr_size**2,
        "pair_per_lr_pixel": per_pair / lr_size**2,
        "queries_per_output_pixel": per_query / out_size**2,
    }


def describe(preset: str) -> dict[str, float]:
    """Parameter count and MACs of a preset (what its model card records)."""
    model = VideoINR(**PRESETS[preset])
    return {"parameters": sum(p.numel() for p in model.parameters()), **count_macs(model)}


def main(argv: list[str] | None = None) -> int:
    """``python -m models.videoinr.network [--preset NAME]``: print size and cost of the presets."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), action="append")
    args = parser.parse_args(argv)
    for preset in args.preset or sorted(PRESETS):
        info = describe(preset)
        print(
            f"{preset}: {info['parameters'] / 1e6:.3f}M parameters; "
            f"encoder {info['encoder_per_lr_pixel'] / 1e3:.1f}K MAC per input pixel per frame, "
            f"pair {info['pair_per_lr_pixel'] / 1e3:.1f}K MAC per input pixel per pair, "
            f"queries {info['queries_per_output_pixel'] / 1e3:.1f}K MAC per output pixel"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
