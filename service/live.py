"""The growing result of a segmented job on RQ, joined by the gateway while the segments are made.

The workers join a segmented job's segments only once all are done (``worker.jobs.assemble_job``). A
client asking for the result before that gets a fragmented MP4 that this module joins on the fly from
the segments finished so far, in order, waiting for the next one: playback starts as soon as the first
segment is done. Segment files stay until no live join reads them (``service.main.sweep`` removes
them), so a live join never has to switch to the joined file (whose timestamps the MP4 muxer may shift).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from service.storage import JobFiles, follow, new_job_id
from worker.media import OutputOptions
from worker.segments import DECODE, SEGMENT_SUFFIX, SegmentPlan

log = logging.getLogger(__name__)

POLL = 0.5
"""Seconds between looks for the next segment."""
MOST_AT_ONCE = 8
"""Live joins one gateway runs at once; more clients get the joined file when it comes."""
running = threading.BoundedSemaphore(MOST_AT_ONCE)


def is_segmented(files: JobFiles) -> bool:
    return files.plan.exists()


def live_joins(files: JobFiles) -> list[Path]:
    """The files of the live joins running (or left by a client that never read) in a job's folder."""
    return list(files.dir.glob(".live-*.mp4"))


def join_live(files: JobFiles, out: Path, job_state: Callable[[], Any], stop: threading.Event) -> None:
    """Append each segment to ``out`` as it appears; end when all are in, or the job ended otherwise.
    Releases its place among the MOST_AT_ONCE live joins when it ends."""

    def state() -> Any:
        try:
            return job_state()
        except RedisError:  # Redis away: look again later
            return None

    joiner = None
    try:
        segments = SegmentPlan.load(files.dir)
        source = None if segments.key == DECODE else files.input  # a bitstream has no audio to copy
        joiner = segments.joiner(source, out, OutputOptions(fragmented=True))
        for segment in segments.segments:
            path = segment.file(files.dir, SEGMENT_SUFFIX)
            while not path.exists():
                current = state()
                if stop.is_set() or current is not None and current.done:  # ended without this segment
                    return
                time.sleep(POLL)
            joiner.append(path)
        joiner.close()
    except Exception as exc:  # the folder deleted under us, a segment gone mid-read: the stream just ends
        log.warning("live join of job %s stopped: %s", files.id, exc)
        if joiner is not None:
            joiner.abort()
    finally:
        running.release()


def live_result(files: JobFiles, state: Callable[[], object], timeout: float) -> AsyncIterator[bytes] | None:
    """The growing joined result as a byte stream, or None when MOST_AT_ONCE live joins are running."""
    if not running.acquire(blocking=False):
        return None
    out = files.dir / f".live-{new_job_id()}.mp4"
    stop = threading.Event()
    thread = threading.Thread(target=join_live, args=(files, out, state, stop), name=f"live-{files.id}", daemon=True)
    thread.start()

    async def finished() -> bool:
        return not thread.is_alive()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in follow(out, finished, timeout):
                yield chunk
        finally:
            stop.set()
            out.unlink(missing_ok=True)

    return chunks()
