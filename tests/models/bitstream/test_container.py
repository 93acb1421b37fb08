"""The container: round trip, every truncation and every single-byte corruption give BitstreamError."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.bitstream import container, entropy, quant
from models.bitstream.container import Bitstream, BitstreamError, Header
from models.nrff.decode import open_bitstream
from tests.corruption import assert_corruption_refused, assert_truncations_refused

SMALL = container.write(
    Bitstream(Header("nrff", 64, 48, 10, Fraction(30000, 1001)), {"CONF": b'{"gop": 8}', "DATA": bytes(range(200))})
)


def test_round_trip_keeps_header_and_sections():
    stream = container.parse(SMALL)
    assert stream.header == Header("nrff", 64, 48, 10, Fraction(30000, 1001))
    assert stream.sections == {"CONF": b'{"gop": 8}', "DATA": bytes(range(200))}


@pytest.mark.parametrize(
    "header",
    [
        Header("nrff", 100000, 100000, 10, Fraction(30)),
        Header("nrff", 64, 64, 10**9, Fraction(30)),
        Header("nrff", 8192, 8192, 100000, Fraction(30)),
        Header("h264", 64, 64, 10, Fraction(30)),
    ],
)
def test_oversized_or_unknown_headers_are_refused(header):
    with pytest.raises(BitstreamError):
        container.write(Bitstream(header, {}))


def test_a_forged_huge_header_is_refused_before_anything_is_allocated():
    fields = container.HEADER.pack(b"VINR", 1, 1, 1, 8192, 8192, 100000, 30, 1, 1, 1, 0)
    import struct
    import zlib

    forged = fields + struct.pack("<I", zlib.crc32(fields)) + container.SECTION.pack(b"DATA", 2**31, 0)
    with pytest.raises(BitstreamError, match="passes"):
        container.parse(forged)


def test_every_truncation_is_refused():
    for length in range(len(SMALL)):
        with pytest.raises(BitstreamError):
            container.parse(SMALL[:length])


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(SMALL) - 1), value=st.integers(0, 255))
def test_every_single_byte_corruption_is_refused(position, value):
    corrupted = bytearray(SMALL)
    if corrupted[position] == value:
        return
    corrupted[position] = value
    with pytest.raises(BitstreamError):
        container.parse(bytes(corrupted))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_corrupted_nrff_files_give_the_typed_error(nrff_clip, data):
    assert_corruption_refused(open_bitstream, nrff_clip[1], data)


def test_nrff_truncations_give_the_typed_error(nrff_clip):
    assert_truncations_refused(open_bitstream, nrff_clip[1])


def test_entropy_and_quantiser_round_trip():
    rng = np.random.default_rng(0)
    symbols = rng.integers(-7, 40, 5000)
    decoded, used = entropy.decode(entropy.encode(symbols), max_symbols=5000)
    assert np.array_equal(decoded, symbols)
    with pytest.raises(BitstreamError):
        entropy.decode(entropy.encode(symbols), max_symbols=4999)
    state = {"w": rng.normal(size=(8, 5)).astype(np.float32), "b": rng.normal(size=8).astype(np.float32)}
    out = quant.unpack_state(quant.pack_state(state, 8), {k: v.shape for k, v in state.items()})
    for name, value in state.items():
        step = (value.max() - value.min()) / 255
        assert np.abs(out[name] - value).max() <= step  # within one quantiser step
    with pytest.raises(BitstreamError):
        quant.unpack_state(quant.pack_state(state, 8), {"w": (8, 5), "b": (9,)})


@pytest.mark.parametrize("bits", [5, 8])
def test_fitting_sees_exactly_the_weights_the_file_stores(bits):
    rng = np.random.default_rng(bits)
    state = {"w": rng.normal(size=(6, 7)).astype(np.float32), "b": rng.normal(size=6).astype(np.float32)}
    stored = quant.unpack_state(quant.pack_state(state, bits), {k: v.shape for k, v in state.items()})
    for name, value in state.items():
        weight = torch.from_numpy(value).requires_grad_()
        seen = quant.fake_quantize(weight, bits)
        assert np.array_equal(seen.detach().numpy(), stored[name])
        seen.sum().backward()  # straight through: the rounding passes the gradient unchanged
        assert torch.equal(weight.grad, torch.ones_like(weight))


def test_weight_differences_round_trip_and_refuse_bad_steps():
    rng = np.random.default_rng(1)
    ints = {"a": rng.integers(-3, 4, (4, 3)), "b": np.zeros(5, dtype=np.int64)}
    steps = {"a": 0.01, "b": 0.5}
    payload = quant.pack_delta(ints, steps)
    out = quant.unpack_delta(payload, {"a": (4, 3), "b": (5,)})
    assert np.allclose(out["a"], ints["a"] * np.float32(0.01)) and not out["b"].any()
    with pytest.raises(BitstreamError, match="tensors"):
        quant.unpack_delta(payload, {"a": (4, 3)})
    with pytest.raises(BitstreamError, match="do not match"):
        quant.unpack_delta(payload, {"a": (4, 3), "b": (6,)})
    bad = payload[:4] + np.array([-1.0, 0.5], dtype="<f4").tobytes() + payload[12:]
    with pytest.raises(BitstreamError, match="positive finite"):
        quant.unpack_delta(bad, {"a": (4, 3), "b": (5,)})
