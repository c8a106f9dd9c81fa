"""Job functions of the dependency tests (importable by workers as ``tests.dep_jobs:<name>``)."""

from __future__ import annotations

import asyncio
import os
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


# -- run-logged jobs (tests/test_workflows_e2e.py) --------------------------------------------
# Each appends one line ``<job id> <pid> <start time>`` to a run-log file when it starts
# (``O_APPEND``, one ``write`` per line: concurrent runs in threads and processes never
# interleave), so a test counts how many times each job ran, where and when.


def _log_start(log: str) -> None:
    line = f"{naq.current_job().job_id} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def logged(log: str, value: Any = None, delay: float = 0.0) -> Any:
    """Log this run's start to ``log``, sleep ``delay`` seconds, return ``value``."""
    _log_start(log)
    if delay:
        time.sleep(delay)
    return value


def logged_collect(log: str) -> dict[str, Any]:
    """Log this run's start to ``log``; return the results of the jobs it depends on."""
    _log_start(log)
    return dict(naq.current_job().dependency_results)


def logged_gate(log: str, gate: str, value: Any = None, timeout: float = 30.0) -> Any:
    """Log this run's start to ``log``, then return ``value`` once the file ``gate``
    exists (the test decides when this job completes); fail after ``timeout`` seconds."""
    _log_start(log)
    deadline = time.monotonic() + timeout
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    return value


def started_at() -> float:
    """The time the job started (epoch seconds)."""
    return time.time()
