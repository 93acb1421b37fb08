"""Loaded at start by a test's worker process whose PYTHONPATH begins with this folder.

- ``VINR_TEST_GATE`` (``gated_worker`` in tests/service/test_heartbeats.py): each job's first progress report
  waits until the file it names exists, so the test, not the machine's speed, decides how long a job runs.
- ``VINR_TEST_ADAPT_ALWAYS=1`` (tests/service/test_adapt_api.py): the adaptation guard keeps any adapted
  weights (``models.videoinr.adapt.MIN_GAIN``), so a test can follow adapted weights through a job
  whatever a few seconds of training on a test clip gain.
"""

import os

GATE = os.environ.get("VINR_TEST_GATE")
if GATE:
    import time
    from pathlib import Path

    import worker.jobs

    reporter = worker.jobs.progress_reporter

    def gated_reporter(report, *more):
        progress = reporter(report, *more)

        def wait_for_gate(done, total):
            while not Path(GATE).exists():
                time.sleep(0.05)
            progress(done, total)

        return wait_for_gate

    worker.jobs.progress_reporter = gated_reporter

if os.environ.get("VINR_TEST_ADAPT_ALWAYS") == "1":
    import models.videoinr.adapt

    models.videoinr.adapt.MIN_GAIN = float("-inf")
