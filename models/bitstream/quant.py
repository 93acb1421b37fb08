"""Per-channel uniform quantisation of weight tensors, and packing a state dict into bytes.

Each tensor is seen as rows (its first axis: output channels); each row gets its own offset and
step (stored as float16), and its values become integers in [0, 2^bits - 1]. All tensors' integers
go through one entropy-coded stream. Shapes are never read from the stream: the caller passes the
shapes its model has, so nothing in a file can make the decoder allocate beyond them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from models.bitstream import entropy
from models.bitstream.container import BitstreamError

M = TypeVar("M", bound=nn.Module)


def quantize(values: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``values`` -> (integers, per-row offsets, per-row steps); offsets/steps as float16."""

    rows = values.reshape(rows_of(values.shape), -1).astype(np.float32)
    low = rows.min(axis=1).astype(np.float16)
    high = rows.max(axis=1)
    step = ((high - low.astype(np.float32)) / (2**bits - 1)).astype(np.float16)
    safe = np.where(step.astype(np.float32) > 0, step.astype(np.float32), 1.0)
    q = np.clip(np.round((rows - low.astype(np.float32)[:, None]) / safe[:, None]), 0, 2**bits - 1)
    return q.astype(np.int64), low, step


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """``weight`` as ``pack_state`` will store it (per-row offset and step in float16, ``bits``-bit
    integers), with the gradient passing straight through: fitting sees the rounding it will get."""
    rows = weight.reshape(rows_of(tuple(weight.shape)), -1)
    low = rows.detach().amin(1).half().float()
    step = ((rows.detach().amax(1) - low) / (2**bits - 1)).half().float()
    safe = torch.where(step > 0, step, torch.ones_like(step))
    q = torch.clamp(torch.round((rows.detach() - low[:, None]) / safe[:, None]), 0, 2**bits - 1)
    stored = (q * step[:, None] + low[:, None]).reshape(weight.shape)
    return weight + (stored - weight).detach()


def dequantize(q: np.ndarray, low: np.ndarray, step: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Integers back to weights. A damaged file's float16 offsets or steps may be infinite or NaN: the
    result is then non-finite, which ``unpack_state`` refuses, so numpy's warning would only be noise."""
    with np.errstate(invalid="ignore", over="ignore"):
        rows = q.reshape(low.shape[0], -1) * step.astype(np.float32)[:, None] + low.astype(np.float32)[:, None]
    return rows.reshape(shape).astype(np.float32)


def rows_of(shape: tuple[int, ...]) -> int:
    """Quantiser rows of a tensor: output channels of a weight; a bias or scalar is one row."""
    return shape[0] if len(shape) > 1 else 1


def pack_state(state: dict[str, np.ndarray], bits: int) -> bytes:
    """``u8 bits | u32 P | P bytes of float16 offsets+steps | entropy-coded integers``, names sorted."""
    params, symbols = [], []
    for name in sorted(state):
        q, low, step = quantize(state[name], bits)
        params += [low.astype("<f2").tobytes(), step.astype("<f2").tobytes()]
        symbols.append(q.ravel())
    blob = b"".join(params)
    return struct.pack("<BI", bits, len(blob)) + blob + entropy.encode(np.concatenate(symbols))


def unpack_state(payload: bytes, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Inverse of ``pack_state`` for a model whose tensor shapes are ``shapes``."""
    if len(payload) < 5:
        raise BitstreamError("unpack_state: truncated")
    bits, size = struct.unpack_from("<BI", payload)
    if not 2 <= bits <= 16:
        raise BitstreamError(f"unpack_state: {bits}-bit weights are not supported")
    names = sorted(shapes)
    expected = sum(4 * rows_of(shapes[n]) for n in names)
    if size != expected or len(payload) < 5 + size:
        raise BitstreamError(f"unpack_state: quantiser table of {size} bytes, expected {expected}")
    total = sum(int(np.prod(shapes[n], dtype=np.int64)) for n in names)
    symbols, _ = entropy.decode(payload[5 + size :], max_symbols=total)
    if symbols.size != total or (symbols.size and (symbols.min() < 0 or symbols.max() >= 2**bits)):
        raise BitstreamError("unpack_state: weight symbols do not match the model")
    out, offset, start = {}, 5, 0
    for name in names:
        shape, rows = shapes[name], rows_of(shapes[name])
        low = np.frombuffer(payload, "<f2", rows, offset)
        step = np.frombuffer(payload, "<f2", rows, offset + 2 * rows)
        offset += 4 * rows
        count = int(np.prod(shape, dtype=np.int64))
        values = dequantize(symbols[start : start + count], low, step, shape)
        if not np.isfinite(values).all():
            raise BitstreamError(f"unpack_state: {name} decodes to non-finite values")
        out[name], start = values, start + count
    return out


def pack_module(module: nn.Module, bits: int) -> bytes:
    """``pack_state`` of a module's parameters and buffers."""
    return pack_state({k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}, bits)


def load_module(module: M, payload: bytes) -> M:
    """``module`` with the weights ``pack_state`` stored in ``payload`` (shapes are the module's own)."""
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    state = unpack_state(payload, shapes)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return module


def as_stored(module: nn.Module, bits: int) -> Callable[..., torch.Tensor]:
    """``module`` called with its weights as ``pack_state`` will store them at ``bits`` bits, the
    gradients passing straight through (quantisation-aware fitting)."""
    stored = {name: fake_quantize(p, bits) for name, p in module.named_parameters()}
    return lambda *args, **kwargs: functional_call(module, stored, args, kwargs)


def pack_delta(ints: dict[str, np.ndarray], steps: dict[str, float]) -> bytes:
    """Integer weight differences and their per-tensor steps: ``u32 n | n x f32 steps | entropy-coded
    integers``, names sorted (the decoder knows the names and shapes from the base model)."""
    names = sorted(ints)
    head = struct.pack("<I", len(names)) + np.array([steps[n] for n in names], dtype="<f4").tobytes()
    return head + entropy.encode(np.concatenate([ints[n].ravel() for n in names]) if names else np.zeros(0))


def unpack_delta(payload: bytes, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Inverse of ``pack_delta``: each tensor's difference (integers times its step) as float32."""
    names = sorted(shapes)
    if len(payload) < 4:
        raise BitstreamError("unpack_delta: truncated")
    (count,) = struct.unpack_from("<I", payload)
    if count != len(names) or len(payload) < 4 + 4 * count:
        raise BitstreamError(f"unpack_delta: {count} tensors where the base has {len(names)}")
    steps = np.frombuffer(payload, "<f4", count, 4).astype(np.float32)
    if not (np.isfinite(steps).all() and (steps > 0).all()):
        raise BitstreamError("unpack_delta: a step is not a positive finite number")
    total = sum(int(np.prod(shapes[n], dtype=np.int64)) for n in names)
    symbols, _ = entropy.decode(payload[4 + 4 * count :], max_symbols=total)
    if symbols.size != total:
        raise BitstreamError("unpack_delta: the differences do not match the base model")
    out, start = {}, 0
    for name, step in zip(names, steps):
        size = int(np.prod(shapes[name], dtype=np.int64))
        values = symbols[start : start + size].astype(np.float32) * step
        if not np.isfinite(values).all():
            raise BitstreamError(f"unpack_delta: {name} decodes to non-finite values")
        out[name], start = values.reshape(shapes[name]), start + size
    return out
