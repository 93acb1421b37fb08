"""The evaluation-only RIFE peer: recursive halving gives every in-between time, in order."""

from __future__ import annotations

import pytest
import torch

from models.videoinr import rife


def test_recursive_halving_makes_k_minus_one_frames():
    torch.manual_seed(0)
    model = rife.IFNet().eval()
    a, b = torch.zeros(1, 3, 40, 52), torch.ones(1, 3, 40, 52)
    frames = rife.interpolate(model, a, b, 4)
    assert [f.shape for f in frames] == [(1, 3, 40, 52)] * 3  # not a multiple of 32: padded, then cropped
    with pytest.raises(ValueError, match="power of 2"):
        rife.interpolate(model, a, b, 3)


def test_weights_are_read_as_tensors_only(tmp_path):
    path = tmp_path / "flownet.pkl"
    torch.save({f"module.{k}": v for k, v in rife.IFNet().state_dict().items()}, path)
    assert isinstance(rife.load(path), rife.IFNet)
    torch.save({"evil": object()}, tmp_path / "bad.pkl")
    with pytest.raises(Exception, match="[Ww]eights only"):
        rife.load(tmp_path / "bad.pkl")
