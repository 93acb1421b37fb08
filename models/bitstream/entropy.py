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


def table(symbols: np.ndarray) -> tuple[int, np.ndarray]:
    """The lowest symbol and the u16 counts (rescaled to about ``COUNT_TOTAL``) of a non-empty 1-D
    integer array: the model both sides code it with."""
    low = int(symbols.min())
    alphabet = int(symbols.max()) - low + 1
    if alphabet > MAX_ALPHABET:
        raise BitstreamError(f"encode: {alphabet} distinct symbol values pass {MAX_ALPHABET}")
    counts = np.bincount((symbols - low).astype(np.int64), minlength=alphabet).astype(np.float64)
    scaled = np.where(counts > 0, np.maximum(1, np.round(counts * COUNT_TOTAL / counts.sum())), 0)
    return low, scaled.astype(np.uint16)


def pack_table(low: int, counts: np.ndarray) -> bytes:
    """``i32 lowest symbol | u32 alphabet size A | A x u16 counts``."""
    return struct.pack("<iI", low, counts.size) + counts.astype("<u2").tobytes()


def read_table(payload: bytes, offset: int) -> tuple[int, np.ndarray, int]:
    """A table written by ``pack_table`` at ``offset``: (lowest symbol, counts, offset after it)."""
    if len(payload) < offset + 8:
        raise BitstreamError("entropy.read_table: truncated table header")
    low, alphabet = struct.unpack_from("<iI", payload, offset)
    if not 1 <= alphabet <= MAX_ALPHABET or len(payload) < offset + 8 + 2 * alphabet:
        raise BitstreamError(f"entropy.read_table: alphabet of {alphabet} symbols is invalid or truncated")
    counts = np.frombuffer(payload, dtype="<u2", count=alphabet, offset=offset + 8).astype(np.uint16)
    if counts.sum() == 0:
        raise BitstreamError("entropy.read_table: empty probability table")
    return low, counts, offset + 8 + 2 * alphabet


def encode_words(parts: list[tuple[np.ndarray, int, np.ndarray]]) -> np.ndarray:
    """Range-code ``(symbols, lowest, counts)`` parts in order into one stream of u32 words; every
    symbol must lie in its table with a non-zero count."""
    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, low, counts in parts:
        if symbols.size and counts.size > 1:  # a one-symbol alphabet costs nothing
            encoder.encode((symbols - low).astype(np.int32), model_for(counts))
    return encoder.get_compressed().astype("<u4")


class Reader:
    """Decodes the parts of one ``encode_words`` stream one at a time, so a part's length and table may
    depend on the symbols before it."""

    def __init__(self, words: np.ndarray):
        self.decoder = constriction.stream.queue.RangeDecoder(words.astype(np.uint32))

    def read(self, n: int, low: int, counts: np.ndarray, model=None) -> np.ndarray:
        """The next ``n`` symbols, coded under ``(low, counts)`` (``model``: ``model_for(counts)``, when
        the caller keeps it for many reads)."""
        if n == 0 or counts.size == 1:
            return np.full(n, low, np.int64)
        try:
            shifted = self.decoder.decode(model or model_for(counts), n)
        except Exception as exc:  # constriction raises its own errors on inconsistent data
            raise BitstreamError(f"entropy.decode: corrupt code words: {exc}") from exc
        return shifted.astype(np.int64) + low


def decode_words(words: np.ndarray, parts: list[tuple[int, int, np.ndarray]]) -> list[np.ndarray]:
    """Inverse of ``encode_words`` for parts of ``(count, lowest, counts)``."""
    reader = Reader(words)
    return [reader.read(n, low, counts) for n, low, counts in parts]


def encode(symbols: np.ndarray) -> bytes:
    """Range-code a 1-D integer array."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size == 0:
        return struct.pack("<IiI", 0, 0, 0) + struct.pack("<I", 0)
    low, counts = table(symbols)
    words = encode_words([(symbols, low, counts)])
    return struct.pack("<I", symbols.size) + pack_table(low, counts) + struct.pack("<I", words.size) + words.tobytes()


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
    words = np.frombuffer(payload, dtype="<u4", count=n_words, offset=offset)
    return decode_words(words, [(n, low, counts)])[0], offset + 4 * n_words
