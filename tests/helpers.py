"""Helpers shared by the test modules: an in-process worker that always stops, and waiting
for a condition with a bound."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import naq

T = TypeVar("T")
WAIT = 15.0


@contextlib.asynccontextmanager
async def running_worker(
    queues: list[str] | str, nats_url: str, *, stop_timeout: float = WAIT, **kwargs: Any
) -> AsyncIterator[naq.Worker]:
    """A worker on the test's event loop; it must still run when the body ends, and it is
    always stopped (errors it hit are raised)."""
    worker = naq.Worker(queues, nats_url=nats_url, **kwargs)
    task = asyncio.create_task(worker.run(), name="naq-test-worker")
    await asyncio.sleep(0)  # let run() start, so request_stop() has a loop to talk to
    try:
        yield worker
        if task.done():  # the worker must still be running when the test body ends
            task.result()
            raise AssertionError("worker stopped by itself while the test was running")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, stop_timeout)


def queue_worker(
    queue: str, nats_url: str, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[naq.Worker]:
    """:func:`running_worker` on one queue, concurrency 4 unless given."""
    kwargs.setdefault("concurrency", 4)
    return running_worker([queue], nats_url, **kwargs)


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float = WAIT, interval: float = 0.03
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_scheduler(nats_url: str, **kwargs: Any) -> AsyncIterator[naq.Scheduler]:
    """A scheduler on the test's loop, always stopped."""
    scheduler = naq.Scheduler(nats_url, **kwargs)
    task = asyncio.create_task(scheduler.run(), name="naq-test-scheduler")
    await asyncio.sleep(0)
    try:
        yield scheduler
    finally:
        scheduler.request_stop()
        await asyncio.wait_for(task, WAIT)
