"""Job functions for the scheduling tests (importable by workers as ``tests.sched_jobs:<name>``).

Runs are recorded in :data:`RUNS` (the tests run workers in-process), keyed by a tag the
test passes, so each test sees only its own runs.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import naq

_lock = threading.Lock()
#: tag -> [(job id, wall time the job started)]
RUNS: defaultdict[str, list[tuple[str, float]]] = defaultdict(list)


def record(tag: str) -> str:
    """Note that this job ran (and when); returns its job id."""
    ctx = naq.current_job()
    job_id = ctx.job_id if ctx is not None else "?"
    with _lock:
        RUNS[tag].append((job_id, time.time()))
    return job_id


async def arecord(tag: str) -> str:
    """Coroutine version of :func:`record`."""
    return record(tag)


def runs(tag: str) -> list[tuple[str, float]]:
    """A copy of what ran for ``tag``."""
    with _lock:
        return list(RUNS[tag])
