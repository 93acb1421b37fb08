"""Rate constants both neural codecs (NRFF, D-NeRV) size their weights and keyframes with."""

from __future__ import annotations

WEIGHT_BITS = 8
"""Bits per quantised weight of a self-contained D-NeRV library."""
BITS_PER_WEIGHT = 7.0
"""Expected entropy-coded bits per 8-bit weight (for choosing the width)."""
NRFF_WEIGHT_BITS = 5
"""Bits per quantised NRFF weight. NRFF fits its last steps with the weights rounded as stored, so
fewer bits cost little and buy a wider network: on carphone at 0.2 bpp (2000 steps) 5-bit weights
gave 30.85 dB in 42,929 bytes where 8-bit ones gave 30.54 dB in 43,473 (6-bit: 30.79 dB, 44,533)."""
NRFF_BITS_PER_WEIGHT = 4.2
"""Expected entropy-coded bits per 5-bit NRFF weight (for choosing the width)."""
KEYFRAME_CRFS = tuple(range(20, 56, 3))
"""CRFs tried for the keyframes."""
