"""Damage a valid bitstream every way a test should survive: truncations and single-byte changes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import strategies as st

from models.bitstream.container import BitstreamError


def assert_truncations_refused(opener: Callable[[bytes], object], stream: bytes, samples: int = 200) -> None:
    """Every prefix up to 64 bytes, then ``samples`` more spread over the file, raise BitstreamError."""
    for length in list(range(0, 64)) + list(range(64, len(stream), max(1, len(stream) // samples))):
        with pytest.raises(BitstreamError):
            opener(stream[:length])


def assert_corruption_refused(opener: Callable[[bytes], object], stream: bytes, data: st.DataObject) -> None:
    """One hypothesis-drawn byte changed to another value raises BitstreamError."""
    position = data.draw(st.integers(0, len(stream) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != stream[position]))
    corrupted = bytearray(stream)
    corrupted[position] = value
    with pytest.raises(BitstreamError):
        opener(bytes(corrupted))
