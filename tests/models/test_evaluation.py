"""The reference codecs the evaluations compare against: every frame back, and the size search."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import CLASSIC, classic, mean_psnr
from models.nrff.evaluate import classic_at_size
from tests.media import texture_frames


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return texture_frames(5, 64, 96, seed=2)


@pytest.mark.parametrize("encoder", sorted(CLASSIC))
def test_each_reference_codec_gives_every_frame_back(frames, encoder):
    nbytes, decoded = classic(frames, encoder, 30)
    assert decoded.shape == frames.shape
    assert 0 < nbytes < frames.nbytes / 4
    assert mean_psnr(decoded, frames) > 20


@pytest.mark.parametrize("encoder", sorted(CLASSIC))
def test_the_size_search_takes_a_crf_that_fits(frames, encoder):
    """A stream at most the size asked for, and no coarser than the CRF that made that size (5% slack:
    x264's threaded encoder is not bit-exact from run to run)."""
    size = int(classic(frames, encoder, 30)[0] * 1.05)
    crf, nbytes, psnr = classic_at_size(frames, encoder, size)
    assert nbytes <= size and crf <= 30 and psnr > 20
