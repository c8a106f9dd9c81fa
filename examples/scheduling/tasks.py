"""The job functions of the scheduling example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import time

#: (label, monotonic time) of each run, for ``main.py``: the worker runs in its process.
RUNS: list[tuple[str, float]] = []


def remind(label: str) -> str:
    """A one-off job: note that it ran."""
    RUNS.append((label, time.monotonic()))
    return f"reminder {label!r} sent"


def tick(label: str) -> None:
    """A recurring job: note that it ran."""
    RUNS.append((label, time.monotonic()))
