"""Rate constants both neural codecs (NRFF, D-NeRV) size their weights and keyframes with."""

from __future__ import annotations

WEIGHT_BITS = 8
"""Bits per quantised weight."""
BITS_PER_WEIGHT = 7.0
"""Expected entropy-coded bits per 8-bit weight (for choosing the width)."""
KEYFRAME_CRFS = tuple(range(20, 56, 3))
"""CRFs tried for the keyframes."""
