"""What a process holds: open files under a folder (Linux /proc), for leak tests."""

from __future__ import annotations

import os
from pathlib import Path


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
