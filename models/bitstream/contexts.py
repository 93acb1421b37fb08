"""Context-coded integer grids: each value is coded under a table chosen by its already-decoded
neighbours, and every table is a two-sided geometric distribution of three integers.

A grid is coded in four phases of its 2x2 polyphase decomposition: (even row, even column) first,
with no context; then (odd, odd), its context the magnitudes of its four diagonal neighbours (all of
phase 0); then (even, odd) and (odd, even), their context the magnitudes of their four direct
neighbours (all of phases 0 and 1). The neighbours' summed magnitude is binned by ``EDGES``, so each
grid has ``GROUPS`` = 1 + 3 x 4 groups, each under its own table. Within a group, values are coded in
raster order. A phase's contexts depend only on earlier phases, so the decoder computes them for a
whole phase at once: decoding stays a few vectorised calls per grid. Sparse latents (mostly zeros,
non-zeros in clusters) code in 22% fewer bits than under one histogram per grid (measured on
bigbuckbunny's residual latents, docs/codec.md).

A table is ``(M, z, r)``: symbols ``-M..M``; zero has probability ``z / 65536``; magnitude ``m``'s
weight is ``2^20`` for ``m = 1`` and ``floor(weight(m - 1) * r / 256)`` (at least 1) after. All of it
is integer arithmetic, so encoder and decoder derive the same counts on any machine
(``models/bitstream/entropy.py`` turns counts into the coder's model). ``M = 0``: every value is zero,
which costs no bits.

Tables of one grid level (little-endian)::

    u16 M of the level (0: every value of the level is zero; nothing follows)
    GROUPS x (u16 M | if M > 0: u16 z, u8 r)
"""

from __future__ import annotations

import struct

import numpy as np

from models.bitstream import entropy
from models.bitstream.container import BitstreamError

EDGES = (1, 2, 4)
"""Bins of the neighbours' summed magnitude: 0, 1, 2-3, 4 and more."""
PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))
"""(row, column) parities in coding order."""
BINS = len(EDGES) + 1
GROUPS = 1 + (len(PHASES) - 1) * BINS
MAX_MAGNITUDE = (1 << 15) - 1
"""Largest magnitude a table may declare (its alphabet, 2M + 1 symbols, stays within entropy.MAX_ALPHABET)."""
FIRST_WEIGHT = 1 << 20

Table = tuple[int, int, int]


def neighbour_sums(magnitudes: np.ndarray, diagonal: bool) -> np.ndarray:
    """Sum of the four diagonal (or direct) neighbours' values in the last two axes, zero outside."""
    pad = np.zeros((*magnitudes.shape[:-2], magnitudes.shape[-2] + 2, magnitudes.shape[-1] + 2), magnitudes.dtype)
    pad[..., 1:-1, 1:-1] = magnitudes
    if diagonal:
        return pad[..., :-2, :-2] + pad[..., :-2, 2:] + pad[..., 2:, :-2] + pad[..., 2:, 2:]
    return pad[..., :-2, 1:-1] + pad[..., 2:, 1:-1] + pad[..., 1:-1, :-2] + pad[..., 1:-1, 2:]


def phase_bins(grid: np.ndarray, phase: int) -> np.ndarray:
    """Context bin of every position of ``phase`` (its ``[..., row::2, col::2]`` view; ``grid`` may be a
    stack of same-sized grids), from the values of earlier phases only (later phases' are never read)."""
    row, col = PHASES[phase]
    if phase == 0:
        return np.zeros(grid[..., row::2, col::2].shape, np.int64)
    sums = neighbour_sums(np.abs(grid), diagonal=phase == 1)[..., row::2, col::2]
    return np.digitize(sums, EDGES)


def group_index(phase: int, bin_: int) -> int:
    return 0 if phase == 0 else 1 + (phase - 1) * BINS + bin_


def groups(grid: np.ndarray) -> list[np.ndarray]:
    """The grid's values split into its ``GROUPS`` groups, each in coding order (for a stack of grids:
    each group's values of all of them, grid after grid)."""
    out = [np.zeros(0, np.int64)] * GROUPS
    for phase, (row, col) in enumerate(PHASES):
        values, bins = grid[..., row::2, col::2], phase_bins(grid, phase)
        for bin_ in range(BINS if phase else 1):
            out[group_index(phase, bin_)] = values[bins == bin_]
    return out


def counts(table: Table) -> np.ndarray:
    """Integer counts of symbols ``-M..M``."""
    magnitude, zero, ratio = table
    weights, weight = [], FIRST_WEIGHT
    for _ in range(magnitude):
        weights.append(weight)
        weight = max(1, weight * ratio >> 8)
    half = np.array(weights, np.int64)
    centre = max(1, zero * 2 * int(half.sum()) // (65536 - zero))
    return np.concatenate([half[::-1], [centre], half])


def fit_table(values: np.ndarray) -> Table:
    """The table that codes ``values`` in the fewest bits (``r`` searched, ``z`` their share of zeros)."""
    magnitudes = np.abs(values)
    top = int(magnitudes.max()) if values.size else 0
    if top == 0:
        return (0, 0, 0)
    if top > MAX_MAGNITUDE:
        raise ValueError(f"contexts.fit_table: magnitude {top} passes {MAX_MAGNITUDE}")
    histogram = np.bincount(magnitudes, minlength=top + 1).astype(np.float64)
    zero = min(65535, max(1, round(65536 * histogram[0] / values.size)))
    ratios = np.arange(1, 256, dtype=np.int64)
    weights = np.empty((ratios.size, top), np.int64)
    weights[:, 0] = FIRST_WEIGHT
    for m in range(1, top):
        weights[:, m] = np.maximum(1, weights[:, m - 1] * ratios >> 8)
    halves = weights.sum(1)
    centre = np.maximum(1, zero * 2 * halves // (65536 - zero))
    totals = np.log2(centre + 2 * halves)
    bits = histogram[0] * (totals - np.log2(centre)) + (histogram[1:] * (totals[:, None] - np.log2(weights))).sum(1)
    return (top, zero, int(ratios[np.argmin(bits)]))


def table_bits(values: np.ndarray) -> float:
    """Bits of ``values`` under their own empirical distribution: the ideal of any one table for them."""
    if values.size == 0:
        return 0.0
    frequency = np.bincount(values - values.min())
    frequency = frequency[frequency > 0]
    return float(-(frequency * np.log2(frequency / values.size)).sum())


def estimate_bits(grids: np.ndarray) -> float:
    """Bits of a stack of same-sized grids ``(N, h, w)`` coded together, each group under its own ideal
    table (the rate control's measure during fitting; tables and the geometric fit's loss are not
    counted)."""
    if not grids.any():  # all zero: nothing to code (often a whole level)
        return 0.0
    return sum(table_bits(values) for values in groups(grids))


def fit_tables(grids: list[np.ndarray]) -> list[Table]:
    """One table per group for same-level grids (of all frames) coded together."""
    split = [groups(grid) for grid in grids]
    return [fit_table(np.concatenate([parts[g] for parts in split])) for g in range(GROUPS)]


def pack_tables(tables: list[Table]) -> bytes:
    top = max(t[0] for t in tables)
    out = [struct.pack("<H", top)]
    if top:
        for magnitude, zero, ratio in tables:
            out.append(struct.pack("<HHB", magnitude, zero, ratio) if magnitude else struct.pack("<H", 0))
    return b"".join(out)


def read_tables(payload: bytes, offset: int) -> tuple[list[Table], int]:
    """Tables written by ``pack_tables`` at ``offset``: (tables, offset after them); BitstreamError if
    malformed."""
    if len(payload) < offset + 2:
        raise BitstreamError("contexts.read_tables: truncated")
    (top,) = struct.unpack_from("<H", payload, offset)
    offset += 2
    if top == 0:
        return [(0, 0, 0)] * GROUPS, offset
    tables = []
    for _ in range(GROUPS):
        if len(payload) < offset + 2:
            raise BitstreamError("contexts.read_tables: truncated")
        (magnitude,) = struct.unpack_from("<H", payload, offset)
        offset += 2
        if magnitude == 0:
            tables.append((0, 0, 0))
            continue
        if len(payload) < offset + 3:
            raise BitstreamError("contexts.read_tables: truncated")
        zero, ratio = struct.unpack_from("<HB", payload, offset)
        offset += 3
        if not (magnitude <= min(top, MAX_MAGNITUDE) and 1 <= zero <= 65535 and ratio >= 1):
            raise BitstreamError(f"contexts.read_tables: invalid table {(magnitude, zero, ratio)}")
        tables.append((magnitude, zero, ratio))
    return tables, offset


class Models:
    """Each table's ``(lowest symbol, counts)`` built once (a file's frames share them)."""

    def __init__(self, tables: list[Table]):
        self.parts = [(-t[0], counts(t)) if t[0] else (0, np.ones(1, np.int64)) for t in tables]
        self.models = [entropy.model_for(c) if c.size > 1 else None for _, c in self.parts]
        phases = [[group_index(p, b) for b in range(BINS if p else 1)] for p in range(len(PHASES))]
        self.coded = [any(tables[g][0] for g in groups) for groups in phases]
        """Per phase: whether any of its groups has a non-zero value (else nothing is read for it)."""


def encode_parts(grid: np.ndarray, models: Models) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """The grid's ``(symbols, lowest, counts)`` parts for ``entropy.encode_words``, in coding order."""
    return [(values, *models.parts[g]) for g, values in enumerate(groups(grid))]


def decode_grid(reader: entropy.Reader, models: Models, height: int, width: int) -> np.ndarray:
    """Inverse of ``encode_parts``: the next grid of ``height x width`` from ``reader``."""
    grid = np.zeros((height, width), np.int64)
    for phase, (row, col) in enumerate(PHASES):
        if not models.coded[phase]:  # every value of the phase is zero, and zeros cost no bits
            continue
        view, bins = grid[row::2, col::2], phase_bins(grid, phase)
        for bin_ in range(BINS if phase else 1):
            where = bins == bin_
            count = int(where.sum())
            if count:
                group = group_index(phase, bin_)
                low, table = models.parts[group]
                view[where] = reader.read(count, low, table, models.models[group])
    return grid
