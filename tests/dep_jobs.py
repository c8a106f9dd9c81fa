"""Job functions of the dependency tests (importable by workers as ``tests.dep_jobs:<name>``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import naq


def step(name: str, delay: float = 0.0) -> str:
    """Return ``name`` after ``delay`` seconds."""
    if delay:
        time.sleep(delay)
    return name


async def async_step(name: str, delay: float = 0.0) -> str:
    """``step`` for the event loop."""
    await asyncio.sleep(delay)
    return name


def boom(message: str = "boom") -> None:
    """Fail for good."""
    raise RuntimeError(message)


def collect() -> dict[str, Any]:
    """The results of the jobs this one depends on, as seen through ``current_job()``."""
    return dict(naq.current_job().dependency_results)


async def sleep_until_cancelled(marker: str, seconds: float = 30.0) -> str:
    """Sleep; when cancelled, write the time to ``marker`` (a file path) and re-raise."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        Path(marker).write_text(repr(time.time()))  # noqa: ASYNC240 - one tiny write
        raise
    return "slept"


def spin_until_cancelled(seconds: float = 30.0) -> str:
    """A sync job that stops when told through ``current_job().cancelled``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if naq.current_job().cancelled:
            return "stopped"
        time.sleep(0.01)
    return "timed out"
