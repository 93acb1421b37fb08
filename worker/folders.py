"""A job's folder: where each of its files lives, named once here (the gateway and the workers share
the folders on a volume: ``VINR_DATA_DIR/jobs/ID``).

``input``: the upload (a video or a neural bitstream); ``result.mp4``: the output, written in place as a
fragmented MP4 while the job runs; ``job.json``: the job's parameters and owner (``service.storage``);
``uploading``: present while the upload is received (the receiving gateway's host and pid);
``attempts.jsonl`` and ``heartbeat``: the run log and the live run's heartbeat (``worker.runs``);
``segments.json`` and ``segments/NNNN.mp4``: a segmented job's plan and finished segments
(``worker.segments``); ``adapted.safetensors`` and ``adapted.json``: the weights adapted to this job's
video and their card, kept for its segments and previews (``worker.adapting``).
"""

from __future__ import annotations

import re
from pathlib import Path

INPUT = "input"
RESULT = "result.mp4"
META = "job.json"
UPLOADING = "uploading"
"""A job folder's mark while its upload is received: the receiving gateway's host and pid (JSON)."""
ATTEMPTS = "attempts.jsonl"
"""The log of runs: a ``start`` and an ``end`` JSON line per run (host, pid, wall time)."""
HEARTBEAT = "heartbeat"
"""A file a running job touches every ``worker.runs.RUN_BEAT`` seconds."""
PLAN = "segments.json"
"""A segmented job's plan."""
SEGMENTS = "segments"
"""A segmented job's finished segments, one file each."""
ADAPTED = "adapted.safetensors"
"""Weights adapted to the job's video (with ``adapted.json``, their card and the adaptation's summary)."""
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
"""What a job id looks like (anything else is refused before touching the disk)."""


def jobs_dir(data_dir: str | Path) -> Path:
    """Where every job's folder lives."""
    return Path(data_dir) / "jobs"


class JobFolder:
    """The paths of one job's folder (or of a work folder laid out the same way)."""

    def __init__(self, folder: Path):
        self.dir = folder
        self.input, self.result, self.meta_path, self.uploading = (folder / n for n in (INPUT, RESULT, META, UPLOADING))
        self.attempts, self.heartbeat, self.plan, self.segments = (
            folder / n for n in (ATTEMPTS, HEARTBEAT, PLAN, SEGMENTS)
        )
        self.adapted = folder / ADAPTED

    def segment(self, index: int, suffix: str) -> Path:
        """Segment ``index``'s file."""
        return self.segments / f"{index:04d}{suffix}"
