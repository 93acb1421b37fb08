"""Entropy coding of integer symbols with constriction's range coder; knows nothing of torch.

Payload layout (little-endian)::

    u32 n symbols | i32 lowest symbol | u32 alphabet size A | A x u16 counts | u32 W | W x u32 words

The model is a categorical distribution made from the stored integer counts: encoder and decoder
derive the same float64 probabilities from the same integers, and constriction turns them into
fixed-point tables deterministically, so decoding is bit-exact on any machine.
"""

from __future__ import annotations

import struct

import constriction
import numpy as np

from models.bitstream.container import BitstreamError

MAX_ALPHABET = 1 << 16
"""Most distinct symbol values one stream may use."""
COUNT_TOTAL = 60000
"""Counts are rescaled to sum to about this (they are stored as u16)."""


def model_for(counts: np.ndarray) -> constriction.stream.model.Categorical:
    probabilities = counts.astype(np.float64) / float(counts.sum())
    return constriction.stream.model.Categorical(probabilities, perfect=False)


def encode(symbols: np.ndarray) -> bytes:
    """Range-code a 1-D integer array."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size == 0:
        return struct.pack("<IiI", 0, 0, 0) + struct.pack("<I", 0)
    low = int(symbols.min())
    shifted = (symbols - low).astype(np.int32)
    alphabet = int(shifted.max()) + 1
    if alphabet > MAX_ALPHABET:
        raise BitstreamError(f"encode: {alphabet} distinct symbol values pass {MAX_ALPHABET}")
    counts = np.bincount(shifted, minlength=alphabet).astype(np.float64)
    scaled = np.where(counts > 0, np.maximum(1, np.round(counts * COUNT_TOTAL / counts.sum())), 0)
    scaled = scaled.astype(np.uint16)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(shifted, model_for(scaled))
    words = encoder.get_compressed().astype("<u4")
    return (
        struct.pack("<IiI", symbols.size, low, alphabet)
        + scaled.astype("<u2").tobytes()
        + struct.pack("<I", words.size)
        + words.tobytes()
    )


def decode(payload: bytes, max_symbols: int) -> tuple[np.ndarray, int]:
    """Decode symbols from the start of ``payload``; returns them and the bytes consumed."""
    if len(payload) < 12:
        raise BitstreamError("entropy.decode: truncated stream header")
    n, low, alphabet = struct.unpack_from("<IiI", payload)
    if n > max_symbols:
        raise BitstreamError(f"entropy.decode: {n} symbols where at most {max_symbols} are expected")
    if alphabet > MAX_ALPHABET or (n and alphabet == 0):
        raise BitstreamError(f"entropy.decode: alphabet of {alphabet} symbols is invalid")
    offset = 12 + 2 * alphabet
    if len(payload) < offset + 4:
        raise BitstreamError("entropy.decode: truncated probability table")
    counts = np.frombuffer(payload, dtype="<u2", count=alphabet, offset=12).astype(np.uint16)
    (n_words,) = struct.unpack_from("<I", payload, offset)
    offset += 4
    if n_words > (len(payload) - offset) // 4:
        raise BitstreamError("entropy.decode: truncated code words")
    if n == 0:
        return np.zeros(0, dtype=np.int64), offset
    if counts.sum() == 0:
        raise BitstreamError("entropy.decode: empty probability table")
    words = np.frombuffer(payload, dtype="<u4", count=n_words, offset=offset).astype(np.uint32)
    try:
        shifted = constriction.stream.queue.RangeDecoder(words).decode(model_for(counts), n)
    except Exception as exc:  # constriction raises its own errors on inconsistent data
        raise BitstreamError(f"entropy.decode: corrupt code words: {exc}") from exc
    return shifted.astype(np.int64) + low, offset + 4 * n_words
