"""Training and fitting budgets: steps and wall time, the cosine schedule, and the progress report.

One definition for the three loops that spend a budget (``videoinr/train.py``, ``nrff/fit.py``,
``dnerv/fit.py``): a run stops when either budget is spent, and its learning rate follows whichever
is further spent, so a time-limited run still decays to the end of its schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    """``steps`` steps and, optionally, ``minutes`` of wall time (``elapsed_s`` already spent when resumed)."""

    steps: int
    minutes: float | None = None
    elapsed_s: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.started -= self.elapsed_s

    def elapsed(self) -> float:
        """Wall seconds spent, resumed runs included."""
        return time.monotonic() - self.started

    def spent(self, step: int) -> float:
        """The fraction of the budget spent: steps, or time when that is further along (may pass 1)."""
        done = step / self.steps
        if self.minutes:
            done = max(done, self.elapsed() / (60 * self.minutes))
        return done

    def exhausted(self, step: int) -> bool:
        """Whether the run must stop before ``step``."""
        return step >= self.steps or bool(self.minutes and self.elapsed() > 60 * self.minutes)


def cosine(peak: float, spent: float, floor: float = 0.0) -> float:
    """Cosine decay from ``peak`` to ``floor * peak`` as ``spent`` goes 0 -> 1 (held at the end after)."""
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, spent))))


def fit_report(step: int, steps: int, mse: float, elapsed_s: float) -> dict:
    """What a fitting loop reports: step of steps, loss (MSE), its PSNR, and seconds spent."""
    return {
        "step": step,
        "steps": steps,
        "loss": mse,
        "psnr": -10 * math.log10(max(mse, 1e-10)),
        "elapsed_s": elapsed_s,
    }
