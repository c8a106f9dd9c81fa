"""Job functions of the metrics tests (run by worker processes as ``tests.metric_jobs:<name>``)."""

from __future__ import annotations

import time
from pathlib import Path


def ok(value: int) -> int:
    return value * 2


def boom(message: str) -> None:
    raise ValueError(message)


def wait_for_file(path: str, timeout: float = 60.0) -> str:
    """Run until ``path`` exists (a gate the test opens)."""
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "opened"
