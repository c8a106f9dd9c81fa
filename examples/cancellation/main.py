"""Runnable example: cancel a waiting job and two running ones (async and sync).

    python examples/cancellation/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/cancellation/main.py

``cancel_job`` stops a job wherever it is: a waiting job never runs; a running async job's
task is cancelled; a running sync job sees ``naq.current_job().cancelled`` turn true and
stops by itself (a thread cannot be killed). Each ends ``cancelled`` and ``job.result()``
raises ``naq.JobCancelledError``. A burst worker runs as a task in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import tasks

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "cancellation-example"


async def wait_until_running(queue: naq.Queue, jobs: list[naq.Job]) -> None:
    """Wait until every job of ``jobs`` is running."""
    while True:
        statuses = [await queue.get_job_status(job.job_id) for job in jobs]
        if all(status == naq.JobStatus.RUNNING for status in statuses):
            return
        await asyncio.sleep(0.05)


async def run(nats_url: str) -> bool:
    """The example; True if all three jobs ended cancelled, quickly, the waiting one unrun."""
    start = time.monotonic()
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        video = await queue.enqueue(tasks.render_video, 20)
        numbers = await queue.enqueue(tasks.crunch_numbers, 20)
        newsletter = await queue.enqueue(tasks.send_newsletter)

        print(f"cancel waiting send_newsletter: {await queue.cancel_job(newsletter.job_id)}")
        worker = naq.Worker(
            [QUEUE], nats_url=nats_url, burst=True, concurrency=2, module_paths=[str(HERE)]
        )
        working = asyncio.create_task(worker.run())
        await asyncio.wait_for(wait_until_running(queue, [video, numbers]), 10)
        print("render_video and crunch_numbers are running")
        print(f"cancel running render_video: {await queue.cancel_job(video.job_id)}")
        print(f"cancel running crunch_numbers: {await queue.cancel_job(numbers.job_id)}")
        await working

        cancelled = 0
        for job in (newsletter, video, numbers):
            status = await queue.get_job_status(job.job_id)
            try:
                await job.result(timeout=5)
                print(f"{job.function}: {status.value}, result returned (not cancelled!)")
            except naq.JobCancelledError:
                print(f"{job.function}: {status.value}, result() raised JobCancelledError")
                cancelled += status == naq.JobStatus.CANCELLED
        again = await queue.cancel_job(video.job_id)
        print(f"cancel render_video again: {again} (it had finished)")
    for note in tasks.NOTICED:
        print(note)
    elapsed = time.monotonic() - start
    print(f"all done in {elapsed:.1f} s (the jobs would have taken 20 s)")
    return cancelled == 3 and not again and len(tasks.NOTICED) == 1 and elapsed < 15


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq cancellation: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
