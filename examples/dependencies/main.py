"""Runnable example: job dependencies (``depends_on``): a chain, a fan-out, a fan-in, and a
failed parent cancelling everything downstream of it.

    python examples/dependencies/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/dependencies/main.py

Workflow 1: ``download`` -> two ``resize`` jobs (fan-out) -> ``publish`` (fan-in), which
reads its dependencies' results. Workflow 2: the same shape whose ``download`` fails: the
resizes and the publish are cancelled without running. A burst worker in this process runs
the jobs; dependants are released by the worker that finishes their last dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import tasks

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "dependencies-example"


async def workflow(queue: naq.Queue, url: str) -> list[naq.Job]:
    """Enqueue download -> resize x2 -> publish; returns the four jobs."""
    raw = await queue.enqueue(tasks.download, url)
    small = await queue.enqueue(tasks.resize, 320, depends_on=raw)
    large = await queue.enqueue(tasks.resize, 1280, depends_on=raw)
    page = await queue.enqueue(tasks.publish, depends_on=[small, large])
    return [raw, small, large, page]


async def run(nats_url: str) -> bool:
    """The example; True if the good workflow published and the bad one was cancelled."""
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        good = await workflow(queue, "https://example.com/cat.jpg")
        bad = await workflow(queue, "ftp://example.com/dog.jpg")
        print(f"publish waits as: {(await queue.get_job_status(good[-1].job_id)).value}")
        worker = naq.Worker([QUEUE], nats_url=nats_url, burst=True, module_paths=[str(HERE)])
        await worker.run()

        published = await good[-1].result(timeout=10)
        print(f"publish result: {published}")
        statuses = {}
        for name, jobs in (("good", good), ("bad", bad)):
            statuses[name] = [(await queue.get_job_status(j.job_id)).value for j in jobs]
            print(f"{name} workflow statuses: {' '.join(statuses[name])}")
        try:
            await bad[-1].result(timeout=10)
        except naq.JobCancelledError as error:
            print(f"bad publish raised JobCancelledError: {error}")
        info = await queue.get_job_info(bad[1].job_id)
        print(f"bad resize: {info.status.value}, {info.error}")
    return (
        published == ["/tmp/cat.jpg@1280", "/tmp/cat.jpg@320"]
        and statuses["good"] == ["completed"] * 4
        and statuses["bad"] == ["failed", "cancelled", "cancelled", "cancelled"]
    )


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq dependencies: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
