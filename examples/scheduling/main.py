"""Runnable example: delayed jobs (``enqueue_in``, ``enqueue_at``) and recurring ones
(``schedule`` with ``interval=`` and with a seconds-field ``cron=``), run by a scheduler.

    python examples/scheduling/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/scheduling/main.py

One-off jobs are message schedules kept by nats-server itself: no naq process is needed
for them to fire. Recurring schedules need a running scheduler (``naq scheduler``, or
``naq.Scheduler`` as here); any number may run, one leads. A worker and a scheduler run as
tasks in this process; the example waits for 2 one-off runs, 3 interval runs and 2 cron
runs, prints when each ran, then stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tasks

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "scheduling-example"
EXPECTED_RUNS = {"in 1 s": 1, "at +2 s": 1, "every 1 s": 3, "cron */1 s": 2}


async def wait_for_runs(deadline: float) -> bool:
    """Wait until every label ran as often as expected (or the deadline passes)."""
    while time.monotonic() < deadline:
        counts = {label: 0 for label in EXPECTED_RUNS}
        for label, _at in tasks.RUNS:
            counts[label] += 1
        if counts == EXPECTED_RUNS:
            return True
        await asyncio.sleep(0.1)
    return False


async def run(nats_url: str) -> bool:
    """The example; True if every job ran as often as promised, none too early."""
    worker = naq.Worker([QUEUE], nats_url=nats_url, module_paths=[str(HERE)])
    scheduler = naq.Scheduler(nats_url=nats_url)
    working = asyncio.create_task(worker.run())
    scheduling = asyncio.create_task(scheduler.run())
    start = time.monotonic()
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        soon = await queue.enqueue_in(1, tasks.remind, "in 1 s")
        later = await queue.enqueue_at(
            datetime.now(UTC) + timedelta(seconds=2), tasks.remind, "at +2 s"
        )
        print(f"enqueue_in job {soon.job_id}, enqueue_at job {later.job_id}")
        every = await queue.schedule(tasks.tick, "every 1 s", interval=1, repeat=3)
        cron = await queue.schedule(tasks.tick, "cron */1 s", cron="*/1 * * * * *", repeat=2)
        for made in (every, cron):
            rule = f"cron {made.cron!r}" if made.cron else f"interval {made.interval:g} s"
            print(f"schedule {made.schedule_id}: {rule}, repeat {made.repeat}")

        all_ran = await wait_for_runs(start + 20)
        print(f"enqueue_in result: {await soon.result(timeout=5)!r}")
        for label, at in tasks.RUNS:
            print(f"ran {label!r} at +{at - start:.1f} s")
        ours = {every.schedule_id, cron.schedule_id}
        left = [s for s in await queue.list_schedules() if s.schedule_id in ours]
        print(f"schedules left after their last run: {len(left)}")  # a finished one is removed

    await scheduler.stop()
    worker.request_stop()
    await asyncio.gather(working, scheduling)
    first = {label: at - start for label, at in reversed(tasks.RUNS)}
    return all_ran and not left and first["in 1 s"] >= 1.0 and first["at +2 s"] >= 1.9


async def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL") or stack.enter_context(EmbeddedServer()).url
        print(f"naq scheduling: NATS at {nats_url}")
        ok = await run(nats_url)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
