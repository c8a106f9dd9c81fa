"""A naq worker in its own process, reporting its timings and memory as JSON lines.

``python -m benchmarks.worker_proc --queue q --concurrency 200 --burst --expect 20000``

Events on stdout: ``started`` (before connecting) and ``done`` (after the worker returned,
on burst exit or SIGTERM). Completions are observed by polling ``Worker.jobs_done`` every
``--poll`` seconds, so first/last completion times are exact to one poll interval.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

from naq import Hooks, JobRun, Worker, setup_logging

from . import jobs
from .common import emit, proc_status_mib, run_async


@dataclass
class Completions:
    """What the poller saw: first and last completion and the count at the first one."""

    first_at: float | None = None
    done_at_first: int = 0
    last_at: float | None = None
    cpu_first: float = 0.0  # process CPU seconds (all threads) at first/last completion
    cpu_last: float = 0.0


async def _poll(worker: Worker, expect: int, interval: float, seen: Completions) -> None:
    while True:
        done = worker.jobs_done + worker.jobs_failed
        now = time.time()
        if done and seen.first_at is None:
            seen.first_at, seen.done_at_first = now, done
            seen.cpu_first = time.process_time()
        if expect and done >= expect and seen.last_at is None:
            seen.last_at = now
            seen.cpu_last = time.process_time()
            return
        await asyncio.sleep(interval)


def _noop_hook(run: JobRun) -> None:
    """A hook that does nothing: what calling hooks costs by itself."""


async def amain(args: argparse.Namespace) -> None:
    if args.signing_key:
        os.environ["NAQ_SIGNING_KEY"] = args.signing_key
    hooks = Hooks()
    if args.hooks:
        hooks.add("before_job", _noop_hook)
        hooks.add("after_job", _noop_hook)
    worker = Worker(
        [args.queue],
        nats_url=os.environ["NAQ_NATS_URL"],
        concurrency=args.concurrency,
        burst=args.burst,
        worker_name="bench",
        events=args.events,
        hooks=hooks,
        metrics_port=args.metrics_port,
        metrics_host="127.0.0.1",
    )
    started = time.time()
    emit("started", pid=os.getpid(), worker_id=worker.worker_id, rss_mib=proc_status_mib("VmRSS"))
    seen = Completions()
    poller = asyncio.create_task(_poll(worker, args.expect, args.poll, seen))
    try:
        await worker.run()
    finally:
        poller.cancel()
    emit(
        "done",
        started=started,
        stopped=time.time(),
        jobs_done=worker.jobs_done,
        jobs_failed=worker.jobs_failed,
        first_done=seen.first_at,
        done_at_first=seen.done_at_first,
        last_done=seen.last_at,
        cpu_s=seen.cpu_last - seen.cpu_first,
        first_job_start=jobs.FIRST_START,
        rss_mib=proc_status_mib("VmRSS"),
        peak_rss_mib=proc_status_mib("VmHWM"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--expect", type=int, default=0, help="jobs to count to 'last_done'")
    parser.add_argument("--poll", type=float, default=0.002, help="completion poll interval, s")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--events", action="store_true", help="publish events (NAQ_EVENTS)")
    parser.add_argument("--hooks", action="store_true", help="a no-op before_job + after_job")
    parser.add_argument("--signing-key", default="", help="sign jobs (NAQ_SIGNING_KEY)")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve /metrics")
    args = parser.parse_args()
    setup_logging("WARNING")
    run_async(amain(args), args.uvloop)


if __name__ == "__main__":
    main()
