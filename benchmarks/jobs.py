"""Job functions the benchmark workers run.

They live at module level under the repository root, so a worker started there may import
them (``benchmarks.jobs:noop``) without any allow-list setting.
"""

from __future__ import annotations

import asyncio
import time

import naq

#: Wall-clock time (``time.time()``) at which the first sleep job of this process started.
FIRST_START: float | None = None


def _mark_start() -> None:
    global FIRST_START
    if FIRST_START is None:
        FIRST_START = time.time()


def noop(i: int) -> int:
    """A sync no-op (runs on the worker's thread pool)."""
    return i


async def anoop(i: int) -> int:
    """An async no-op (runs on the worker's event loop)."""
    return i


def stamp() -> float:
    """The wall-clock time the job started (sync)."""
    return time.time()


async def astamp() -> float:
    """The wall-clock time the job started (async)."""
    return time.time()


async def sleep10() -> None:
    """Sleep 10 ms on the event loop."""
    _mark_start()
    await asyncio.sleep(0.01)


def sleep10_sync() -> None:
    """Block a worker thread for 10 ms."""
    _mark_start()
    time.sleep(0.01)


def hold(seconds: float) -> None:
    """Block a worker thread for ``seconds`` (a dependency that is still running while its
    dependant is enqueued)."""
    time.sleep(seconds)


def count_dependency_results() -> int:
    """How many dependency results the job sees through ``naq.current_job()``."""
    return len(naq.current_job().dependency_results)


def sleep2(i: int) -> int:
    """Block a worker thread for 2 ms (a short job of the priority backlog)."""
    time.sleep(0.002)
    return i
