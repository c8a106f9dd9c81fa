"""Job functions the scheduling benchmark's workers run (``benchmarks.schedule_jobs:tick``)."""

from __future__ import annotations


async def tick(i: int) -> int:
    """An async no-op: what is measured is when it *starts* (the worker's ``started_at``)."""
    return i
