"""Rate constants of the neural codecs: D-NeRV's stored weights, and the keyframe CRFs the D-NeRV base
training uses (NRFF's weight bits, CRFs and splits are in ``models/nrff/fit.py``)."""

from __future__ import annotations

WEIGHT_BITS = 8
"""Bits per quantised weight of a self-contained D-NeRV library."""
BITS_PER_WEIGHT = 7.0
"""Expected entropy-coded bits per 8-bit weight (for choosing the width)."""
KEYFRAME_CRFS = tuple(range(20, 56, 3))
"""CRFs the D-NeRV base training codes its keyframes at (one drawn per window)."""
