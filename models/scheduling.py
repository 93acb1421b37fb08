"""Keep every thread of this process under the normal time-sharing policy.

SVT-AV1 (``libsvtav1`` in PyAV's FFmpeg, v4.1 here), when the process runs as root (as in most
containers), moves the thread that opens an encoder and every encoder thread it starts to
SCHED_FIFO at priority 99. Measured here: a fresh Python process that encodes five AV1 frames ends
with its main thread and 40 encoder threads at FIFO 99. Children inherit the policy: a worker process
or a torch thread pool started afterwards runs real-time, and their threads that spin while waiting
for work never yield the CPU, which hung a CI run on 2 cores. Encoders call ``leave_realtime()``
right after the codec opens (their first ``encode``).
"""

from __future__ import annotations

import os

REALTIME = tuple(getattr(os, name) for name in ("SCHED_FIFO", "SCHED_RR") if hasattr(os, name))


def thread_ids() -> list[int]:
    """This process's thread ids (Linux), or ``[0]`` (the calling thread) where /proc is missing."""
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def leave_realtime() -> int:
    """Move every thread of this process that runs SCHED_FIFO or SCHED_RR back to SCHED_OTHER; returns
    how many moved (0 where the platform has no such policies)."""
    if not REALTIME or not hasattr(os, "sched_setscheduler"):
        return 0
    moved = 0
    for tid in thread_ids():
        try:  # on Linux the sched_* calls take a thread id
            if os.sched_getscheduler(tid) in REALTIME:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                moved += 1
        except OSError:  # the thread ended meanwhile, or may not be changed
            continue
    return moved
