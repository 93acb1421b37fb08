"""Files of every earlier container version still decode, to the quality they were written with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.bitstream import container
from models.dnerv.decode import open_library
from models.evaluation import mean_psnr
from models.nrff.decode import open_bitstream
from tests.media import texture_frames

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def as_bytes(frames) -> np.ndarray:
    return np.stack([(image * 255 + 0.5).astype(np.uint8) for _, image in frames])


@pytest.mark.parametrize(
    ("name", "version", "seed", "expected"),
    [("v1.nrff", 1, 21, 22.60), ("v2.nrff", 2, 22, 18.69), ("v3.nrff", 3, 23, 25.10)],  # as tests/golden/README.md says
)
def test_earlier_nrff_versions_decode(name, version, seed, expected):
    data = (GOLDEN / name).read_bytes()
    assert data[4] == version and container.VERSION > version
    assert ("RESD" in container.parse(data).sections) == (version == 3)  # v3's: a histogram-coded residual
    decoded = as_bytes(open_bitstream(data).frames())
    truth = texture_frames(8, 32, 48, seed=seed)
    assert decoded.shape == truth.shape
    assert mean_psnr(decoded, truth) == pytest.approx(expected, abs=0.05)


def test_version_1_dnerv_library_decodes():
    data = (GOLDEN / "v1.dnerv").read_bytes()
    assert data[4] == 1
    library = open_library(data)
    assert [v["name"] for v in library.videos] == ["clip0", "clip1"]
    check_videos(library, (19.46, 17.55), seed=30, frames=9, widths=(32, 32))


def check_videos(library, expected: tuple[float, ...], seed: int, frames: int, widths: tuple[int, ...]) -> None:
    """Each video of ``library`` decodes to its clip (``texture_frames`` of ``seed + index``) at its PSNR."""
    for index, (psnr, width) in enumerate(zip(expected, widths)):
        truth = texture_frames(frames, 32, width, seed=seed + index, velocity=(1.0 + index, 0.5))
        decoded = as_bytes(library.frames(index))
        assert decoded.shape == truth.shape
        assert mean_psnr(decoded, truth) == pytest.approx(psnr, abs=0.05)


def test_format_2_dnerv_library_decodes():
    """A library of CONF format 2 (no ``gop``: keyframes ``clip`` frames apart) with a base decoder."""
    data = (GOLDEN / "format2.dnerv").read_bytes()
    library = open_library(data)
    assert library.config["format"] == 2 and library.config["gop"] == library.config["preset"]["clip"] == 8
    check_videos(library, (23.27, 20.88), seed=40, frames=10, widths=(48, 40))


def test_format_3_dnerv_library_decodes():
    """A library of CONF format 3 (keyframes ``gop`` = 2 frames apart, every frame the network's output)."""
    library = open_library((GOLDEN / "format3.dnerv").read_bytes())
    assert library.config["format"] == 3 and library.config["gop"] == 2
    check_videos(library, (27.19, 25.53), seed=50, frames=10, widths=(48, 40))


def test_format_4_dnerv_library_decodes():
    """A library of CONF format 4 (keyframes shown as decoded, base ``dnerv-s-v2``; no latent residual)."""
    library = open_library((GOLDEN / "format4.dnerv").read_bytes())
    assert library.config["format"] == 4 and library.config["gop"] == 2
    assert library.config["base"]["name"] == "dnerv-s-v2"
    check_videos(library, (27.16, 26.01), seed=60, frames=10, widths=(48, 40))
