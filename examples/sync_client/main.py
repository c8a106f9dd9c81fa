"""Runnable example: naq from plain synchronous code (no ``async``, no event loop of yours).

    python examples/sync_client/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/sync_client/main.py

It starts ``naq worker sync-example`` as a subprocess (as you would in production), then
enqueues with ``naq.enqueue_sync`` and reads the result with ``naq.fetch_job_result_sync``,
then does the same for several jobs through one ``naq.SyncClient`` connection.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import tasks

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "sync-example"


@contextlib.contextmanager
def worker_process(nats_url: str) -> Iterator[None]:
    """``naq worker sync-example`` in a subprocess, stopped (SIGTERM) on exit."""
    command = [sys.executable, "-m", "naq", "worker", QUEUE, "--module-path", str(HERE)]
    worker = subprocess.Popen(command, env={**os.environ, "NAQ_NATS_URL": nats_url})
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def run(nats_url: str) -> bool:
    """Enqueue and read results from sync code; True if the results are right."""
    # module-level helpers: one blocking connection per thread, reused by later calls
    job = naq.enqueue_sync(tasks.word_count, "the quick brown fox", queue_name=QUEUE)
    words = naq.fetch_job_result_sync(job.job_id, timeout=10)
    print(f"enqueue_sync: job {job.job_id}, word_count result {words!r}")

    # one client, one connection, the same calls as methods
    with naq.SyncClient(nats_url=nats_url, queue_name=QUEUE) as client:
        jobs = [client.enqueue(tasks.square, n) for n in range(1, 6)]
        squares = [client.fetch_job_result(j.job_id, timeout=10) for j in jobs]
        status = client.get_job_status(jobs[-1].job_id)
    print(f"SyncClient: {len(jobs)} jobs, squares {squares}, last status {status.value}")
    return words == 4 and squares == [1, 4, 9, 16, 25] and status == naq.JobStatus.COMPLETED


def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL")
        if not nats_url:
            nats_url = stack.enter_context(EmbeddedServer()).url
            os.environ["NAQ_NATS_URL"] = nats_url  # for the module-level *_sync helpers
        print(f"naq sync client: NATS at {nats_url}")
        stack.enter_context(worker_process(nats_url))
        ok = run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
