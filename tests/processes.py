"""Helpers about processes: waiting for one to reach a state (tests and benchmarks), and what a process
holds open under a folder (Linux /proc, for leak tests)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def poll(check: Callable[[], object], timeout: float, interval: float = 0.2, errors: tuple[type[Exception], ...] = ()):
    """``check()``'s first truthy value, asked every ``interval`` seconds (``errors`` count as not yet);
    TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except errors:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"not within {timeout:g} s")


def open_files_under(folder: Path, pid: int | str = "self") -> list[str]:
    """Paths under ``folder`` that process ``pid`` (this one by default) holds open, deleted ones included."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found
