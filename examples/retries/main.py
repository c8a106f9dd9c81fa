"""Runnable example: retries with backoff, a job that fails for good, its dead letter, and
running it again with ``requeue_dead_letter``.

    python examples/retries/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/retries/main.py

``tasks.flaky_fetch`` fails twice and succeeds on its third attempt (``max_retries=3``,
exponential backoff from 0.2 s). ``tasks.charge`` fails on both of its attempts
(``max_retries=1``), so it ends ``failed`` and is kept in the dead-letter stream; once the
"payment service" is back, the dead letter is requeued and the job completes under its
original id. Burst workers in this process run the jobs.
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
QUEUE = "retries-example"


async def work(nats_url: str) -> None:
    """Run the queue's jobs, retries included, until it is empty."""
    worker = naq.Worker([QUEUE], nats_url=nats_url, burst=True, module_paths=[str(HERE)])
    await worker.run()


async def show_attempts(queue: naq.Queue, job_id: str) -> naq.JobInfo:
    """Print a job's status and each attempt's error."""
    info = await queue.get_job_info(job_id)
    print(f"{info.function} {job_id}: {info.status.value} after {len(info.attempts)} attempts")
    for attempt in info.attempts:
        outcome = f"{attempt.error_type}: {attempt.error}" if attempt.error_type else "ok"
        print(f"  attempt {attempt.attempt}: {outcome}")
    return info


async def run(nats_url: str) -> bool:
    """The example; True if each job ended as promised."""
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        fetch = await queue.enqueue(
            tasks.flaky_fetch,
            "https://example.com/feed",
            max_retries=3,
            retry_delay=0.2,  # waits 0.2 s, then 0.4 s
            retry_strategy="exponential",
            retry_on=(ConnectionError,),  # other exceptions fail at once
        )
        payment = await queue.enqueue(tasks.charge, 42, max_retries=1, retry_delay=0.1)
        await work(nats_url)

        fetched = await fetch.result(timeout=10)
        print(f"flaky_fetch result: {fetched!r}")
        fetch_info = await show_attempts(queue, fetch.job_id)
        try:
            await payment.result(timeout=10)
            charge_error = ""
        except naq.JobExecutionError as error:
            charge_error = str(error)
        print(f"charge raised JobExecutionError: {charge_error}")
        charge_info = await show_attempts(queue, payment.job_id)

        letters = [d for d in await queue.list_dead_letters() if d.job_id == payment.job_id]
        for letter in letters:
            print(f"dead letter {letter.id}: job {letter.job_id} ({letter.kind}) {letter.reason}")

        tasks.PAYMENT_SERVICE_UP = True  # the outage is over: run the job again
        requeued = await naq.requeue_dead_letter(letters[0].id, nats_url=nats_url)
        print(f"requeued dead letter {letters[0].id} as job {requeued}")
        await work(nats_url)
        charged = await queue.fetch_job_result(payment.job_id, timeout=10)
        print(f"charge result after requeue: {charged!r}")
    await naq.close()  # the module-level helpers' shared connection
    return (
        fetched == "fetched https://example.com/feed on attempt 3"
        and len(fetch_info.attempts) == 3
        and charge_info.status == naq.JobStatus.FAILED
        and len(letters) == 1
        and requeued == payment.job_id
        and charged == "order 42 charged"
    )


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq retries: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
