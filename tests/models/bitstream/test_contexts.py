"""Context-coded integer grids: exact round trips, fewer bits than one table where neighbours predict,
and malformed tables refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.bitstream import contexts, entropy
from models.bitstream.container import BitstreamError


def round_trip(grids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Decoded grids and the code's size in bits, the tables packed and read back as a file would."""
    packed = contexts.pack_tables(contexts.fit_tables(grids))
    tables, used = contexts.read_tables(packed, 0)
    assert used == len(packed)
    models = contexts.Models(tables)
    words = entropy.encode_words([part for grid in grids for part in contexts.encode_parts(grid, models)])
    reader = entropy.Reader(words)
    return [contexts.decode_grid(reader, models, *grid.shape) for grid in grids], 32 * words.size


def clustered(rng, height: int, width: int) -> np.ndarray:
    """Mostly zeros, the non-zeros in blobs (what fitted latents look like)."""
    blobs = np.zeros((height, width))
    for _ in range(max(1, height * width // 200)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        blobs[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 1
    return (blobs * rng.laplace(scale=2.0, size=(height, width))).round().astype(np.int64)


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 23), st.integers(1, 23)), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.0, 0.3, 3.0, 300.0]),
)
def test_any_grids_round_trip_exactly(shapes, seed, scale):
    rng = np.random.default_rng(seed)
    grids = [
        (rng.laplace(scale=scale, size=shape) if scale else np.zeros(shape)).round().astype(np.int64)
        for shape in shapes
    ]
    decoded, _ = round_trip(grids)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, grids))


def test_clustered_values_cost_fewer_bits_than_under_one_table():
    rng = np.random.default_rng(0)
    grids = [clustered(rng, 72, 128) for _ in range(8)]
    decoded, bits = round_trip(grids)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, grids))
    one_table = contexts.table_bits(np.concatenate([g.ravel() for g in grids]))
    assert bits < 0.9 * one_table
    assert bits == pytest.approx(contexts.estimate_bits(np.stack(grids)), rel=0.05)  # the rate control's measure


def test_contexts_only_read_earlier_phases():
    """The decoder computes a phase's contexts before the later phases exist: changing their values
    must not change it."""
    rng = np.random.default_rng(1)
    grid = rng.integers(-3, 4, (9, 8))
    for phase in range(len(contexts.PHASES)):
        later = grid.copy()
        for r, c in contexts.PHASES[phase:]:
            later[r::2, c::2] = rng.integers(-9, 10, later[r::2, c::2].shape)
        assert np.array_equal(contexts.phase_bins(grid, phase), contexts.phase_bins(later, phase))


def test_tables_are_integers_the_decoder_rebuilds_exactly():
    counts = contexts.counts((3, 40000, 128))
    assert counts.dtype == np.int64 and counts.size == 7
    assert list(counts[4:]) == [1 << 20, 1 << 19, 1 << 18] and list(counts[:3]) == [1 << 18, 1 << 19, 1 << 20]
    assert counts[3] == 40000 * 2 * (7 << 18) // (65536 - 40000)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01", "truncated"),
        (struct.pack("<HH", 5, 6) + struct.pack("<HB", 100, 9), "invalid table"),  # M above the level's
        (struct.pack("<HH", 5, 5) + struct.pack("<HB", 0, 9), "invalid table"),  # P(0) = 0
        (struct.pack("<HH", 5, 5) + struct.pack("<HB", 100, 0), "invalid table"),  # ratio 0
        (struct.pack("<HH", 5, 5) + struct.pack("<HB", 100, 9) + struct.pack("<H", 4), "truncated"),
    ],
)
def test_malformed_tables_are_refused(payload, message):
    with pytest.raises(BitstreamError, match=message):
        contexts.read_tables(payload, 0)
