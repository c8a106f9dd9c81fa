"""Runnable example: a job reports its progress, the producer watches it.

    python examples/progress/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/progress/main.py

``tasks.import_rows`` calls ``naq.current_job().set_progress(fraction, message)`` after each
step; the progress is stored in the job's record, so any process can read it with
``get_job_info`` (``naq job ID`` and the dashboard show it too). A worker runs as a task in
this process while the producer polls the record and prints each new progress.
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
QUEUE = "progress-example"


async def watch(queue: naq.Queue, job_id: str) -> list[float]:
    """Print each new progress of ``job_id`` until it finishes; returns the values seen."""
    seen: list[float] = []
    while True:
        info = await queue.get_job_info(job_id)
        if info.progress_message and (not seen or info.progress != seen[-1]):
            seen.append(info.progress)
            print(f"progress {info.progress:.0%}: {info.progress_message}")
        if info.status.is_final:  # completed, failed, cancelled or dead
            return seen
        await asyncio.sleep(0.05)


async def run(nats_url: str) -> bool:
    """The example; True if progress was seen rising to 100% and the job completed."""
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        job = await queue.enqueue(tasks.import_rows, 4, 0.3)
        worker = naq.Worker([QUEUE], nats_url=nats_url, burst=True, module_paths=[str(HERE)])
        working = asyncio.create_task(worker.run())
        seen = await watch(queue, job.job_id)
        await working
        rows = await job.result(timeout=5)
    print(f"result: {rows} rows; progress seen {len(seen)} times")
    return rows == 4 and len(seen) >= 2 and seen == sorted(set(seen))


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq progress: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
