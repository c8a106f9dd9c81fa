"""Runnable example: enqueue two jobs, run a worker, read their results.

    python examples/hello_world/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/hello_world/main.py

It enqueues an async job and a sync job on the ``hello-example`` queue, runs a burst worker
in this process (it returns once the queue is empty), and prints each job's result.
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
QUEUE = "hello-example"


async def run(nats_url: str) -> bool:
    """Enqueue, work, read the results; True if they are what the functions return."""
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        greeting = await queue.enqueue(tasks.greet, "Ada")
        total = await queue.enqueue(tasks.add, 2, 3)
        print(f"enqueued {greeting.function} as job {greeting.job_id}")
        print(f"enqueued {total.function} as job {total.job_id}")

        # a worker normally runs apart (`naq worker hello-example`); burst=True returns
        # once the queue is empty, module_paths says where it finds `tasks`
        worker = naq.Worker([QUEUE], nats_url=nats_url, burst=True, module_paths=[str(HERE)])
        await worker.run()

        hello = await greeting.result(timeout=10)
        five = await queue.fetch_job_result(total.job_id, timeout=10)
        status = await queue.get_job_status(greeting.job_id)
    print(f"greet result: {hello!r}")
    print(f"add result: {five!r}")
    print(f"greet status: {status.value}")
    return hello == "Hello, Ada!" and five == 5 and status == naq.JobStatus.COMPLETED


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq hello world: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
