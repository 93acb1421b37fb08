"""Loaded at start by a test's worker process whose PYTHONPATH begins with this folder (``gated_worker`` in
tests/service/test_heartbeats.py): each job's first progress report waits until the file named by
``VINR_TEST_GATE`` exists, so the test, not the machine's speed, decides how long a job runs."""

import os

GATE = os.environ.get("VINR_TEST_GATE")
if GATE:
    import time
    from pathlib import Path

    import worker.jobs

    reporter = worker.jobs.progress_reporter

    def gated_reporter(report):
        progress = reporter(report)

        def wait_for_gate(done, total):
            while not Path(GATE).exists():
                time.sleep(0.05)
            progress(done, total)

        return wait_for_gate

    worker.jobs.progress_reporter = gated_reporter
