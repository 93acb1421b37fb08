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
  because one model serves every scale in [1, 4]. As in the paper it does not read t
  (``spatial_time=False``, from ``videoinr-s`` v2 on): its code is computed once per output pixel
  and pair and shared by every output time between the pair; ``videoinr-s-v1`` read t.
- First layers are split by input: the columns that read low-res features and colours are applied
  once per low-res pixel (one product per map in ``encode_pair``, ``pixel_rows``) and then sampled, which is exact
  because nearest and bilinear sampling commute with a per-pixel linear map. The SpatialINR's last
  layer is folded into the two layers that read its code (``code_projections``, exact).
- Queries run on rows of points ``(B, T, N, C)``. For CPU inference (``ops.cpu_inference``) the
  products are oneDNN calls with the bias and ReLU fused, each bilinear read of both frames' projected
  features is one ``embedding_bag`` over channels-last rows (``ops.bilinear_sum``), and the encoder and
  pair stage run channels-last with those row warps; with autograd (training) or an ONNX trace the
  same numbers come from portable ops (``grid_sample``, ``F.linear``), tested equal within 1e-4.
- MLPs use ReLU in ``videoinr-s`` v3 (as LIIF does; measured: exact GELU took a quarter of the CPU
  query time), GELU in v1 and v2; SIREN (sine, w0 = 30, the paper's choice) is kept as
  ``activation="sine"``. Sine MLPs need their special initialisation and small learning rates.
- Fewer, narrower layers in ``videoinr-s`` (0.34M parameters; 32-wide MLPs, 3.9K multiply-accumulates
  per output pixel against v2's 10.6K, and a 4-level flow pyramid that follows twice the motion of
  v2's 3 levels). ``videoinr-m`` (6.5M)
  is near the paper's 11.31M less what its DCN alignment and ConvLSTM take (7.3M), with a deeper
  encoder and 256-wide MLPs instead.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from models import ops
from models.registry import register


@dataclass(frozen=True, kw_only=True)
class VideoINRConfig:
    """VideoINR's constructor arguments; ``asdict`` is a checkpoint's spec ``args``."""

    channels: int = 32
    """Feature channels of the encoder and the alignment."""
    encoder_blocks: int = 4
    motion_channels: int = 32
    """Width of the flow estimator's convolutions."""
    fusion_blocks: int = 1
    hidden: int = 64
    """Width of the SpatialINR and decoder MLPs (the TemporalINR's is half)."""
    activation: str = "gelu"
    """``gelu`` or ``sine`` (SIREN)."""
    spatial_time: bool = True
    """Whether the SpatialINR reads t (v1); False (v2) computes it once for all output times of a pair."""
    temporal_hidden: int = 0
    """Width of the TemporalINR (0: half of ``hidden``, as in v1 and v2)."""
    motion_levels: int = 3
    """Pyramid levels of the flow estimator; each one doubles the motion it can follow."""


PRESETS: dict[str, VideoINRConfig] = {
    "videoinr-s": VideoINRConfig(
        fusion_blocks=0, hidden=32, activation="relu", spatial_time=False, temporal_hidden=32, motion_levels=4
    ),
    "videoinr-s48": VideoINRConfig(
        fusion_blocks=0, hidden=48, activation="relu", spatial_time=False, temporal_hidden=32, motion_levels=4
    ),
    "videoinr-s-v2": VideoINRConfig(spatial_time=False),
    "videoinr-s-v1": VideoINRConfig(),
    "videoinr-m": VideoINRConfig(
        channels=64, encoder_blocks=30, motion_channels=128, fusion_blocks=10, hidden=256, spatial_time=False
    ),
}
"""Named configurations. ``videoinr-s`` is the network of v3 and v4 (32-wide ReLU MLPs, no fusion blocks, a
4-level flow pyramid; checkpoint ``videoinr-s-v3`` holds v3's weights); ``videoinr-s-v2`` (64-wide GELU MLPs)
and ``videoinr-s-v1`` (whose SpatialINR also reads t) stay loadable. ``videoinr-s48`` is ``videoinr-s`` with
48-wide SpatialINR and decoder MLPs, trained from v4 through ``widen``; its checkpoint is the default
(``models.registry.DEFAULT_MODEL``, docs/quality.md). All are small enough for CPU inference; ``videoinr-m``
is for GPUs."""


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


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "sine": Sine}
"""MLP activations by name (``VideoINRConfig.activation``)."""


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
            layers.append(ACTIVATIONS[activation]())
    if zero_last:
        nn.init.zeros_(linear.weight)  # the last layer
        nn.init.zeros_(linear.bias)
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
            last = nn.Conv2d(width, 4, 3, padding=1)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # made with a bias
            head = nn.Sequential(
                nn.Conv2d(4 * channels + 4, width, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(width, width, 3, padding=1),
                nn.LeakyReLU(0.1),
                last,
            )
            self.refiners.append(head)

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor) -> torch.Tensor:
        pyramid = [(feat0, feat1)]
        for _ in range(self.levels - 1):
            f0, f1 = pyramid[-1]
            pyramid.append((F.avg_pool2d(f0, 2, ceil_mode=True), F.avg_pool2d(f1, 2, ceil_mode=True)))
        coarsest = pyramid[-1][0]  # flows add up in float32 under autocast (bfloat16 steps by 1/8 pixel past 16)
        flow = torch.zeros_like(coarsest[:, :4], dtype=torch.float32 if ops.autocasting(coarsest) else coarsest.dtype)
        for level in reversed(range(self.levels)):
            f0, f1 = pyramid[level]
            if level < self.levels - 1:
                flow = ops.resize_flow(flow, f0)
            warped1, warped0 = ops.warp_pair(f0, f1, flow)
            flow = flow + self.refiners[level](torch.cat([f0, warped1, f1, warped0, flow], dim=1))
        return flow


def pixel_rows(maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A per-pixel linear map ``weight`` ``(O, C)`` of ``maps`` ``(B, C, h, w)`` as rows ``(B, h*w, O)``.

    The product reads the channels-first maps transposed (no copy) and writes rows."""
    flat = maps.flatten(2)
    if flat.shape[0] == 1:  # matmul of a 3-D transposed view would copy it first
        return torch.mm(flat[0].t(), weight.t()).unsqueeze(0)
    return torch.bmm(flat.transpose(1, 2), weight.t().expand(flat.shape[0], -1, -1))


@dataclass
class PairState:
    """Everything a query needs from one encoded input pair (all low-res, ``(B, C, h, w)``)."""

    images: torch.Tensor  # (B, 6, h, w): frame 0 RGB then frame 1 RGB, in [0, 1]
    features: torch.Tensor  # (B, 3C, h, w): aligned frame-0, fused middle, aligned frame-1
    flows: torch.Tensor  # (B, 4, h, w): flow 0->1 then 1->0, low-res pixels
    warp_images: torch.Tensor  # (2B, 3, h, w): frame 0 / frame 1 RGB, interleaved (what the flows warp)
    spatial_rows: torch.Tensor  # (B, h*w, H): the SpatialINR's first layer on features and colours, a row per pixel
    decoder_maps: torch.Tensor  # (2B, H, h, w): the decoder's first layer on aligned frame-0 / frame-1 features

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[-2], self.images.shape[-1]

    def float(self) -> PairState:
        """This state in float32 (a pair stage run under half-precision autocast, for float32 queries)."""
        return PairState(*(getattr(self, name).float() for name in self.__dataclass_fields__))


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
        spatial_time: bool = True,
        temporal_hidden: int = 0,
        motion_levels: int = 3,
    ):
        super().__init__()
        c, h = channels, hidden
        self.config = VideoINRConfig(
            channels=channels,
            encoder_blocks=encoder_blocks,
            motion_channels=motion_channels,
            fusion_blocks=fusion_blocks,
            hidden=hidden,
            activation=activation,
            spatial_time=spatial_time,
            temporal_hidden=temporal_hidden,
            motion_levels=motion_levels,
        )
        self.spec = {"name": "videoinr", "args": asdict(self.config)}
        self.channels = c
        self.encoder = conv_stack(3, c, encoder_blocks)
        self.motion = MotionEstimator(c, motion_channels, motion_levels)
        self.align = nn.ModuleList([conv_stack(2 * c, c, fusion_blocks) for _ in range(2)])
        self.fuse = conv_stack(2 * c, c, fusion_blocks)
        self.spatial_time = spatial_time
        # input layouts (the order of the first layers' columns): what each MLP reads
        self.spatial_inputs = {"feat": 3 * c, "rgb": 6, "rel": 2, "cell": 2, "t": int(spatial_time)}
        self.temporal_inputs = {"z": h, "prior": 4, "t": 1}
        self.decoder_inputs = {"z": h, "feat0": c, "feat1": c, "rgb0": 3, "rgb1": 3, "t": 1}
        self.spatial = mlp(sum(self.spatial_inputs.values()), [h, h, h], h, activation)
        th = temporal_hidden or h // 2
        self.temporal = mlp(sum(self.temporal_inputs.values()), [th, th], 6, activation, zero_last=True)
        self.decoder = mlp(sum(self.decoder_inputs.values()), [h, h], 3, activation, zero_last=True)

    @classmethod
    def from_config(cls, config: VideoINRConfig) -> VideoINR:
        return cls(**asdict(config))

    def encode_frame(self, image: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``(B, C, h, w)`` of an RGB frame ``(B, 3, h, w)`` in [0, 1]."""
        if not ops.cpu_inference(image):
            return self.encoder(image - 0.5)
        # oneDNN's convolutions and ops.backward_warp run on rows of pixels. Written into canonical channels-last
        # strides: a permuted (h, w, 3) array has a batch stride of 3, which passes ``is_contiguous`` as
        # channels-last yet makes the convolutions choose channels-first
        centred = torch.empty_like(image, memory_format=torch.channels_last)
        return self.encoder(torch.sub(image, 0.5, out=centred))

    def encode_pair(
        self, image0: torch.Tensor, image1: torch.Tensor, feat0: torch.Tensor, feat1: torch.Tensor
    ) -> PairState:
        """Align and fuse two frames' features (the encoder stage shared by all queries)."""
        flows = self.motion(feat0, feat1)
        warped1, warped0 = ops.warp_pair(feat0, feat1, flows)
        aligned0 = feat0 + self.align[0](torch.cat([feat0, warped1], 1))
        aligned1 = feat1 + self.align[1](torch.cat([feat1, warped0], 1))
        middle = self.fuse(torch.cat([aligned0, aligned1], 1))
        images = torch.cat([image0, image1], 1)
        features = torch.cat([aligned0, middle, aligned1], 1)
        # First layers are linear, and nearest/bilinear sampling commutes with a per-pixel linear map:
        # apply the columns that read features and colours once per low-res pixel, then sample. The products
        # write rows of pixels (a query gathers whole rows): (B, h*w, H).
        spatial = self.parts(self.spatial[0], self.spatial_inputs)
        rows = pixel_rows(features, spatial["feat"]) + pixel_rows(images - 0.5, spatial["rgb"])
        decoder = self.parts(self.decoder[0], self.decoder_inputs)
        project = torch.stack([pixel_rows(aligned0, decoder["feat0"]), pixel_rows(aligned1, decoder["feat1"])], 1)
        # (2B, H, h, w) in channels-last memory: ops.bilinear_sum reads its rows, grid_sample takes any strides
        decoder_maps = project.view(-1, *aligned0.shape[-2:], project.shape[-1]).permute(0, 3, 1, 2)
        return PairState(
            images,
            features,
            flows,
            torch.stack([image0, image1], 1).flatten(0, 1),  # built once per pair, not per query chunk
            rows,
            decoder_maps,
        )

    @staticmethod
    def parts(layer: nn.Linear, inputs: dict[str, int]) -> dict[str, torch.Tensor]:
        """A first layer's weight split into the columns that read each named input."""
        return dict(zip(inputs, layer.weight.split(list(inputs.values()), dim=1)))

    def run(self, layers: nn.Sequential, hidden: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """``layers[1:stop]`` of an MLP over rows ``(..., C)``, after its first layer's pre-activation ``hidden``.

        A linear layer and the ReLU after it are one call (``ops.linear_rows``)."""
        rest = list(layers)[1:stop]
        index = 0
        while index < len(rest):
            layer = rest[index]
            if isinstance(layer, nn.Linear):
                relu = index + 1 < len(rest) and isinstance(rest[index + 1], nn.ReLU)
                hidden = ops.linear_rows(hidden, layer.weight, layer.bias, relu)
                index += 2 if relu else 1
                continue
            if isinstance(layer, nn.ReLU):
                hidden = torch.relu(hidden) if torch.is_grad_enabled() else torch.relu_(hidden)
            else:
                hidden = layer(hidden)
            index += 1
        return hidden

    def query(self, state: PairState, points: torch.Tensor, t: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, N, 3)`` at low-res pixel-unit points ``(B, N, 2)``, times ``t`` ``(B,)`` in [0, 1].

        ``cell`` ``(B, 2)`` is the output pixel's (width, height) in low-res pixels (1 / scale).
        """
        return self.query_times(state, points, t.view(-1, 1), cell)[:, :, 0].transpose(1, 2)

    def code_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The SpatialINR's last layer folded into the first layers of the TemporalINR and the decoder.

        The code ``z`` is linear in the SpatialINR's last hidden activations and only those two layers
        read it, so ``(W_t; W_d) z`` is one ``(Ht + H) x H`` product of the activations, one fewer
        ``H x H`` layer per output pixel. Returns that weight and its bias, which also holds the
        TemporalINR's first bias and the decoder's (with the -0.5 that centres the colours it reads).
        """
        last = self.spatial[-1]
        temporal = self.parts(self.temporal[0], self.temporal_inputs)
        decoder = self.parts(self.decoder[0], self.decoder_inputs)
        reads = torch.cat([temporal["z"], decoder["z"]])
        bias = torch.cat([self.temporal[0].bias, self.decoder[0].bias - 0.5 * self.colour_columns().sum(1)])
        return reads @ last.weight, bias + reads @ last.bias

    def colour_columns(self) -> torch.Tensor:
        """The decoder's first-layer columns that read frame 0's then frame 1's warped colours, ``(H, 6)``."""
        decoder = self.parts(self.decoder[0], self.decoder_inputs)
        return torch.cat([decoder["rgb0"], decoder["rgb1"]], 1)

    def query_times(
        self, state: PairState, points: torch.Tensor, times: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """RGB ``(B, 3, T, N)`` at points ``(B, N, 2)`` for each of ``T`` times ``(B, T)``.

        What does not depend on time (the spatial code ``z`` when the SpatialINR takes no ``t``, its
        projections into the temporal and decoder MLPs, the prior flow) is computed once for all T.
        The MLPs run on rows ``(B, T or 1, N, C)``, the layout of a row gather and of oneDNN's products.
        """
        batch, n = points.shape[:2]
        dtype = points.dtype
        size = ops.size_xy(state.flows, dtype)  # (w, h) of the low-res maps, a tensor (dynamic in ONNX)
        tt = times.to(dtype).view(batch, -1, 1, 1)  # (B, T, 1, 1)

        # SpatialINR: nearest low-res pixel's projected features + relative offset + cell (+ t)
        spatial = self.parts(self.spatial[0], self.spatial_inputs)
        centres = ops.nearest_centres(points, size)
        index = ((centres[..., 1] - 0.5) * size[0] + (centres[..., 0] - 0.5)).long()  # (B, N)
        hidden = state.spatial_rows.shape[2]
        bias = self.spatial[0].bias + cell.to(dtype) @ spatial["cell"].t()  # (B, H)
        rel = points - centres  # (B, N, 2)
        if batch == 1:  # a gather of contiguous rows, then one product: ~10x faster than gathering columns
            pre = torch.addmm(state.spatial_rows[0].index_select(0, index[0]), rel[0], spatial["rel"].t())
            pre = pre.add_(bias).unsqueeze(0)
        else:
            gathered = state.spatial_rows.gather(1, index.unsqueeze(2).expand(-1, -1, hidden))
            pre = torch.baddbmm(gathered + bias.unsqueeze(1), rel, spatial["rel"].t().expand(batch, -1, -1))
        pre = pre.unsqueeze(1)  # (B, 1, N, H)
        if self.spatial_time:
            pre = pre + spatial["t"][:, 0] * tt
        weight, bias = self.code_projections()
        code = ops.linear_rows(self.run(self.spatial, pre, -1), weight, bias)  # (B, 1 or T, N, Ht + H)
        code_t, code_d = code.split([weight.shape[0] - hidden, hidden], -1)

        # TemporalINR: residual motion over the prior flow, and visibilities
        temporal = self.parts(self.temporal[0], self.temporal_inputs)
        prior = ops.grid_sample(state.flows, points).permute(0, 2, 3, 1)  # (B, 1, N, 4)
        pre = ops.linear_rows(prior, temporal["prior"], None) + code_t
        motion = self.run(self.temporal, pre + temporal["t"][:, 0] * tt)  # (B, T, N, 6)
        xy = points.unsqueeze(1)  # (B, 1, N, 2)
        point0 = xy + tt * (prior[..., 2:4] + motion[..., 0:2])
        point1 = xy + (1 - tt) * (prior[..., 0:2] + motion[..., 2:4])
        both = torch.stack([point0, point1], -2)  # (B, T, N, 2, 2): where each output point reads frame 0 and 1
        steps = both.shape[1]

        # decoder: projected warped features + warped colours + code + t, residual over the visibility blend
        decoder = self.parts(self.decoder[0], self.decoder_inputs)
        pre = ops.bilinear_sum(state.decoder_maps, both)  # (B, T, N, H): both frames' projected features
        pre += code_d
        pre += decoder["t"][:, 0] * tt
        colour_points = both.permute(0, 3, 1, 2, 4).reshape(2 * batch, steps * n, 2)
        warped_rgb = ops.grid_sample(state.warp_images, colour_points, "bicubic").view(batch, 6, steps, n)
        colours = self.colour_columns()
        rows = warped_rgb.permute(0, 2, 3, 1)  # (B, T, N, 6)
        if ops.cpu_inference(pre) and pre.is_contiguous():  # the product adds into pre, no separate pass
            pre.view(-1, hidden).addmm_(rows.reshape(-1, 6), colours.t())
        else:
            pre = pre + F.linear(rows, colours)
        residual = self.run(self.decoder, pre).permute(0, 3, 1, 2)  # (B, 3, T, N)

        vis = torch.sigmoid(motion[..., 4:6]).permute(0, 3, 1, 2)  # (B, 2, T, N)
        tc = tt.view(batch, 1, -1, 1)
        weight0, weight1 = (1 - tc) * vis[:, :1], tc * vis[:, 1:]
        base = (weight0 * warped_rgb[:, :3] + weight1 * warped_rgb[:, 3:]) / (weight0 + weight1).clamp_min(1e-6)
        return base + residual

    def query_frame(self, state: PairState, height: int, width: int, t: float, chunk: int = 65536) -> torch.Tensor:
        """The whole ``(B, 3, height, width)`` output frame at time ``t``, ``chunk`` points at a time."""
        h, w = state.size
        points = ops.pixel_centres(
            height, width, h / height, w / width, device=state.images.device, dtype=state.images.dtype
        )
        return self.query_points(state, points, [t], (w / width, h / height), chunk)[:, :, 0].reshape(
            state.images.shape[0], 3, height, width
        )

    def query_points(
        self,
        state: PairState,
        points: torch.Tensor,
        times: list[float],
        cell: tuple[float, float],
        chunk: int = 65536,
    ) -> torch.Tensor:
        """RGB ``(B, 3, T, N)`` at the same points ``(N, 2)`` for every batch item and time.

        All times go through the MLPs together, ``chunk // T`` points at a time (``chunk`` bounds
        the points x times in flight, so memory does not grow with the number of times).
        """
        batch = state.images.shape[0]
        like = state.images
        stamps = ops.on_device(times, like.device, like.dtype).expand(batch, -1)
        cells = ops.on_device(list(cell), like.device, like.dtype).expand(batch, 2)
        step = max(1, chunk // len(times))
        out = [
            self.query_times(state, part.unsqueeze(0).expand(batch, -1, -1), stamps, cells)
            for part in points.split(step)
        ]
        return torch.cat(out, 3)

    def forward(
        self, image0: torch.Tensor, image1: torch.Tensor, points: torch.Tensor, t: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """Training entry: encode both frames and query ``points`` ``(B, N, 2)`` at ``t`` ``(B,)``."""
        state = self.encode_pair(image0, image1, self.encode_frame(image0), self.encode_frame(image1))
        return self.query(state, points, t, cell)


def widen(source: VideoINR, hidden: int, init_scale: float = 0.5) -> VideoINR:
    """``source`` with SpatialINR and decoder MLPs ``hidden`` wide that computes the same function.

    Everything else is copied. In every widened layer the old units keep their weights, the new units
    get ``init_scale`` times PyTorch's default initialisation as incoming weights, and every weight
    out of a new unit (including the new code ``z`` channels read by the TemporalINR and the decoder)
    starts at zero, so training can grow them. The TemporalINR's width must be set explicitly
    (``temporal_hidden``), since 0 would make it follow ``hidden``.
    """
    old = source.config
    if hidden < old.hidden or not old.temporal_hidden:
        raise ValueError(f"widen: needs hidden >= {old.hidden} and an explicit temporal_hidden")
    target = VideoINR.from_config(replace(old, hidden=hidden))
    mlps = ("spatial", "temporal", "decoder")
    with torch.no_grad():
        sources = source.state_dict()
        for name, tensor in target.state_dict().items():
            if name.split(".")[0] not in mlps:
                tensor.copy_(sources[name])
        for mlp_name in mlps:
            layers = [m for m in getattr(source, mlp_name) if isinstance(m, nn.Linear)]
            grown = [m for m in getattr(target, mlp_name) if isinstance(m, nn.Linear)]
            for index, (a, b) in enumerate(zip(layers, grown)):
                # the first layer's columns by input name (the code z that the temporal and decoder MLPs read is wider)
                named = index == 0
                inputs_a = getattr(source, f"{mlp_name}_inputs") if named else {"hidden": a.in_features}
                inputs_b = getattr(target, f"{mlp_name}_inputs") if named else {"hidden": b.in_features}
                weight = torch.zeros_like(b.weight)
                blocks = dict(zip(inputs_b, weight.split(list(inputs_b.values()), dim=1)))  # views into weight
                for name, block in zip(inputs_a, a.weight.split(list(inputs_a.values()), dim=1)):
                    blocks[name][: a.out_features, : block.shape[1]] = block
                weight[a.out_features :] = b.weight[a.out_features :] * init_scale
                b.weight.copy_(weight)
                b.bias.zero_()
                b.bias[: a.out_features] = a.bias
    return target


def count_macs(model: VideoINR, lr_size: int = 32, scale: float = 4.0, times: int = 4) -> dict[str, float]:
    """Multiply-accumulates per low-res pixel (encoder per frame, pair stage per pair) and per output
    pixel (queries, with ``times`` output frames per pair sharing what does not depend on time)."""
    image = torch.rand(1, 3, lr_size, lr_size)
    out_size = int(lr_size * scale)
    points = ops.pixel_centres(out_size, out_size, 1 / scale, 1 / scale)
    counts = []
    with torch.no_grad():
        for stage in ("encoder", "pair", "queries"):
            with FlopCounterMode(display=False) as counter:
                if stage == "encoder":
                    feat = model.encode_frame(image)
                elif stage == "pair":
                    state = model.encode_pair(image, image, feat, feat)
                else:
                    model.query_points(state, points, [(k + 1) / (times + 1) for k in range(times)], (1 / scale,) * 2)
            counts.append(counter.get_total_flops() / 2)
    return {
        "encoder_per_lr_pixel": counts[0] / lr_size**2,
        "pair_per_lr_pixel": counts[1] / lr_size**2,
        "queries_per_output_pixel": counts[2] / (out_size**2 * times),
    }


def describe(preset: str) -> dict[str, float]:
    """Parameter count and MACs of a preset (what its model card records)."""
    model = VideoINR.from_config(PRESETS[preset])
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
