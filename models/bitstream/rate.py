"""Rate constants of the neural codecs: D-NeRV's stored weights, and the keyframe CRFs NRFF and the
D-NeRV base training use (NRFF's weight bits are in ``models/nrff/fit.py``)."""

from __future__ import annotations

WEIGHT_BITS = 8
"""Bits per quantised weight of a self-contained D-NeRV library."""
BITS_PER_WEIGHT = 7.0
"""Expected entropy-coded bits per 8-bit weight (for choosing the width)."""
KEYFRAME_CRFS = tuple(range(20, 56, 3))
"""CRFs tried for the keyframes."""
