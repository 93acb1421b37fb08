"""Count what the GPU path asks of the host per output frame, on any machine (not a test).

Runs the device path of ``Upsampler`` (``UpsampleOptions(path="device")``: the code CUDA takes, with its
chunks and tiles sized for ``--memory`` bytes) and counts, per output frame:

- ATen calls (a ``TorchDispatchMode`` sees every operator call; each costs the host several microseconds
  of Python and dispatch before a GPU sees it);
- bytes copied to the host (what ``Upsampler.to_host`` hands the encoder);
- synchronisations: the copy-out waits, plus every call that makes the host wait for a device (a blocking
  copy between devices, ``.item()``, ``nonzero`` and the other data-dependent shapes).

``--device meta`` (the default) runs shapes only, in seconds and no memory, through the same Python code;
``--device cpu`` computes the frames for real. Frames are converted to 8-bit 4:2:0 (``yuv420p``, BT.709)
as a 1080p output is.

``python -m bench.dispatch`` prints the two workloads of issue #39 (270p30 -> 1080p120: 4 output times per
pair; 540p -> 1080p: one output time per pair) for 24 GB of device memory.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models import registry
from models.registry import DEFAULT_MODEL
from models.videoinr.upsampler import FrameFormat, UpsampleOptions, Upsampler

WAITING_OPS = frozenset(
    {
        "aten._local_scalar_dense",
        "aten.item",
        "aten.nonzero",
        "aten.masked_select",
        "aten.unique",
        "aten._unique2",
        "aten.unique_consecutive",
        "aten.equal",
        "aten.is_nonzero",
    }
)
"""Operators whose result the host must read before it can go on (a GPU finishes everything queued first)."""
WORKLOADS = {"270p30-1080p120": (270, 480, 1080, 1920, 4), "540p-1080p": (540, 960, 1080, 1920, 1)}
"""Named workloads: low-res (h, w), output (h, w) and output times per input pair."""


class DispatchCount(TorchDispatchMode):
    """Counts ATen calls by operator, and the calls that make the host wait."""

    def __init__(self):
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.waits = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        self.calls[name] += 1
        out = func(*args, **kwargs)
        if name in WAITING_OPS:
            self.waits += 1
        elif name in ("aten._to_copy", "aten.copy_") and not kwargs.get("non_blocking", False):
            source = args[1] if name == "aten.copy_" else args[0]
            target = args[0] if name == "aten.copy_" else out
            if isinstance(source, torch.Tensor) and source.device != target.device:
                self.waits += 1  # a blocking copy between devices synchronises the stream
        return out


@contextlib.contextmanager
def watching_constructors(counter: DispatchCount) -> Iterator[None]:
    """Count ``torch.tensor(..., device=D)`` and ``Tensor.new_tensor`` off the CPU as waits: they copy host
    data to the device below the dispatcher (no ATen call to see), with a blocking copy that synchronises."""
    tensor, new_tensor = torch.tensor, torch.Tensor.new_tensor

    def counted(make):
        @functools.wraps(make)
        def made(*args, **kwargs):
            out = make(*args, **kwargs)
            if out.device.type != "cpu":
                counter.waits += 1
            return out

        return made

    torch.tensor, torch.Tensor.new_tensor = counted(tensor), counted(new_tensor)
    try:
        yield
    finally:
        torch.tensor, torch.Tensor.new_tensor = tensor, new_tensor


@dataclass
class FrameCounts:
    """Per output frame, averaged over a run of several pairs."""

    calls: float
    host_bytes: float
    synchronisations: float
    frames: int
    chunk: int
    tiles: int
    top: list[tuple[str, int]]


def count(
    model: torch.nn.Module,
    low: tuple[int, int],
    high: tuple[int, int],
    times: int,
    *,
    memory: int,
    device: str = "meta",
    pairs: int = 2,
) -> FrameCounts:
    """Count the device path over ``pairs`` pairs of ``low``-sized input frames made ``high`` at ``times``
    output times each (every input frame encoded once, as a job does); ``model`` is moved to ``device``."""
    upsampler = Upsampler(model, device, options=UpsampleOptions(path="device", memory=memory))
    into = FrameFormat("yuv420p", 1)
    rng = np.random.default_rng(0)
    stamps = [k / times for k in range(times)]
    counter, frames = DispatchCount(), 0
    with counter, watching_constructors(counter):
        previous = upsampler.features(rng.random((*low, 3), dtype=np.float32))
        for _ in range(pairs):
            current = upsampler.features(rng.random((*low, 3), dtype=np.float32))
            frames += len(upsampler.render_frames(previous, current, stamps, *high, into=into))
            previous = current
    total = sum(counter.calls.values())
    return FrameCounts(
        calls=total / frames,
        host_bytes=upsampler.transfers.bytes / frames,
        synchronisations=(upsampler.transfers.synchronisations + counter.waits) / frames,
        frames=frames,
        chunk=upsampler.chunk,
        tiles=len(upsampler.tiles(*low)),
        top=counter.calls.most_common(8),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--memory", type=float, default=24.0, help="device memory the path plans for, GB")
    parser.add_argument("--device", default="meta", help="meta (shapes only, fast) or cpu (computed)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS))
    args = parser.parse_args(argv)
    model = registry.load(args.model)
    print(f"model {args.model}, device path on {args.device}, planned for {args.memory:g} GB of device memory")
    print()
    print(
        "| workload | output times per pair | ATen calls per output frame | bytes to host per output frame "
        "| synchronisations per output frame | query chunk (points x times) | tiles |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.workload or list(WORKLOADS):
        lh, lw, hh, hw, times = WORKLOADS[name]
        got = count(
            model, (lh, lw), (hh, hw), times, memory=int(args.memory * 1e9), device=args.device, pairs=args.pairs
        )
        print(
            f"| {name} ({lw}x{lh} -> {hw}x{hh}) | {times} | {got.calls:.0f} | {got.host_bytes:,.0f} "
            f"({got.host_bytes / (hw * hh):.2f} x W x H) | {got.synchronisations:.2f} | {got.chunk:,} | {got.tiles} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
