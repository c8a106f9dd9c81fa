"""Runnable example: watching naq at work: events, queue and worker listings, hooks and
Prometheus metrics.

    python examples/monitoring/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/monitoring/main.py

A worker runs as a task in this process with events on (``Worker(events=True)``; or
``NAQ_EVENTS=1``), an ``after_job`` hook, and ``/metrics`` on a free port. The example
enqueues three jobs that complete and one that fails (retried once), then prints the events
``naq.watch_events`` delivered, ``list_queues`` and ``list_workers`` for its queue, what the
hook saw, and the worker's ``naq_jobs_total`` metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import tasks

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "monitoring-example"


class OutcomeCounter(naq.Middleware):
    """A worker hook: counts how each job run ended."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def after_job(self, run: naq.JobRun) -> None:
        """Called after every attempt, whatever its outcome."""
        self.outcomes[str(run.outcome)] += 1


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def collect_events(nats_url: str, since: datetime, into: list[naq.Event]) -> None:
    """Append every event of the queue from ``since`` on (until cancelled)."""
    async for event in naq.watch_events(QUEUE, since=since, nats_url=nats_url):
        into.append(event)


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> bool:
    """Wait until ``await check()`` is true; False if it was not within ``seconds``."""
    for _ in range(int(seconds / 0.1)):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def queue_counts(nats_url: str) -> tuple[int, int]:
    """The queue's completed and failed counts (0, 0 for a queue naq has not seen yet)."""
    found = [q for q in await naq.list_queues(nats_url=nats_url) if q.name == QUEUE]
    return (found[0].completed, found[0].failed) if found else (0, 0)


async def run(nats_url: str) -> bool:
    """The example; True if the events, listings, hook and metrics tell the same story."""
    before = await queue_counts(nats_url)  # the queue may have a history on your server
    events: list[naq.Event] = []
    watching = asyncio.create_task(collect_events(nats_url, datetime.now(UTC), events))
    counter = OutcomeCounter()
    port = free_port()
    worker = naq.Worker(
        [QUEUE],
        nats_url=nats_url,
        worker_name="monitoring-example",
        module_paths=[str(HERE)],
        heartbeat_interval=0.5,  # listings refresh at each heartbeat (5 s by default)
        events=True,
        hooks=[counter],
        metrics_port=port,
    )
    working = asyncio.create_task(worker.run())
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        for width in (320, 640, 1280):
            await (await queue.enqueue(tasks.resize, width)).result(timeout=10)
        bad = await queue.enqueue(tasks.corrupt_upload, "cat.txt", max_retries=1)
        with contextlib.suppress(naq.JobExecutionError):
            await bad.result(timeout=10)

    async def events_arrived() -> bool:
        return sum(e.kind in ("completed", "failed") for e in events) == 4

    async def worker_counted() -> bool:
        mine = [
            w for w in await naq.list_workers(nats_url=nats_url) if w.worker_id == worker.worker_id
        ]
        return bool(mine) and mine[0].jobs_done + mine[0].jobs_failed == 4

    ok = await wait_until(events_arrived) and await wait_until(worker_counted)
    watching.cancel()
    for event in events:
        if event.job_id is not None:
            print(f"event {event.kind:<9} {event.function} attempt {event.attempt}")

    (info,) = [q for q in await naq.list_queues(nats_url=nats_url) if q.name == QUEUE]
    completed, failed = info.completed - before[0], info.failed - before[1]
    print(
        f"list_queues {info.name}: {completed} more completed, {failed} more failed,"
        f" waiting={info.waiting} workers={info.workers}"
    )
    (me,) = [
        w for w in await naq.list_workers(nats_url=nats_url) if w.worker_id == worker.worker_id
    ]
    print(f"list_workers {me.worker_id}: jobs_done={me.jobs_done} jobs_failed={me.jobs_failed}")
    print(f"after_job hook outcomes: {dict(sorted(counter.outcomes.items()))}")

    url = f"http://127.0.0.1:{port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    for line in text.splitlines():
        if line.startswith("naq_jobs_total{") and QUEUE in line:
            print(f"metric {line}")

    worker.request_stop()
    await working
    await naq.close()  # the listings' shared connection
    return ok and (completed, failed) == (3, 1) and me.jobs_done == 3


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq monitoring: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
