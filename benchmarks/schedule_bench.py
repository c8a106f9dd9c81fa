"""Scheduling benchmark: ``python -m benchmarks.schedule_bench [--oneoffs N] [--recurring N]``.

On a fresh embedded nats-server:

1. **One-off jobs.** ``enqueue_at`` N jobs (default 1,000,000) due uniformly over the next
   hour (queue ``sched-bg``, no worker: the server keeps firing ~N/3600 of them per second
   into it). Reports enqueue time and rate, client peak RSS, server RSS. Then 1,000 more due
   in 5 s on ``sched-hot`` (worked by a ``naq worker`` process): lateness from the due time to
   the job's start (the worker's ``started_at``), p50/p99, once all due at the same instant
   ("burst") and once spread over one second ("spread"); server CPU (the server *is* the
   scheduler here) per wall second while idle-firing and during the burst.
2. **Recurring schedules.** A ``naq scheduler`` process; N schedules (default 10,000), each a
   6-field cron firing once a minute at a random second (~N/60 runs per second into
   ``sched-rbg``). Reports creation time, scheduler CPU per second and RSS; then 1,000 more
   schedules (``repeat=1``) due in 5 s, burst and spread, lateness as above.

Nothing here is part of the test suite. Numbers go to ``docs/scheduling.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import naq
from benchmarks.schedule_jobs import tick
from benchmarks.schedule_proc import (
    CpuWindow,
    peak_rss_mib,
    percentile,
    rss_mib,
    spawn_naq,
    stop,
)
from naq.models import JobStatus
from naq.queue import Queue
from naq.results import ResultStore
from naq.scheduling.runs import run_job_id
from naq.server import EmbeddedServer

HOT = 1000
LEAD = 5.0


async def bounded(calls: Callable[[int], Awaitable[Any]], n: int, window: int) -> float:
    """Run ``calls(i)`` for i < n with at most ``window`` in flight; returns seconds taken."""
    start = time.perf_counter()
    sem = asyncio.Semaphore(window)
    done = 0
    last_report = start

    async def one(i: int) -> None:
        nonlocal done, last_report
        async with sem:
            await calls(i)
        done += 1
        now = time.perf_counter()
        if now - last_report > 10:
            last_report = now
            print(f"    ... {done:,}/{n:,} ({done / (now - start):,.0f}/s)", flush=True)

    tasks: set[asyncio.Task[None]] = set()
    for i in range(n):
        await sem.acquire()  # keep the task count bounded too
        sem.release()
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if len(tasks) >= window * 2:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


async def started_at(
    store: ResultStore, due: dict[str, float], timeout: float = 60, fired: list[float] | None = None
) -> list[float]:
    """Lateness (s) of each job in ``due`` once all have completed; with ``fired``, also
    collect when each was enqueued (recurring runs are stamped when the scheduler fires)."""
    deadline = time.monotonic() + timeout
    late: dict[str, float] = {}
    while len(late) < len(due) and time.monotonic() < deadline:
        missing = [j for j in due if j not in late]
        records = await asyncio.gather(*(store.get(j) for j in missing))
        for job_id, record in zip(missing, records, strict=True):
            if record is not None and record.status == JobStatus.COMPLETED.value:
                assert record.started_at is not None
                late[job_id] = record.started_at - due[job_id]
                if fired is not None and record.enqueued_at is not None:
                    fired.append(record.enqueued_at - due[job_id])
        if len(late) < len(due):
            await asyncio.sleep(0.5)
    if len(late) < len(due):
        print(f"    !! only {len(late)}/{len(due)} jobs completed")
    return list(late.values())


def summary(name: str, late: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in late]
    result = {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
        "min_ms": min(ms) if ms else math.nan,
    }
    print(
        f"    {name}: n={result['n']} lateness p50 {result['p50_ms']:.1f} ms, p90 "
        f"{result['p90_ms']:.1f}, p99 {result['p99_ms']:.1f}, max {result['max_ms']:.1f}, "
        f"min {result['min_ms']:.1f}",
        flush=True,
    )
    return result


def next_whole_second(lead: float) -> float:
    return float(math.ceil(time.time() + lead))


async def one_offs(url: str, server_pid: int, n: int, window: int, tmp: Path) -> dict[str, Any]:
    print(f"\n== one-off jobs: {n:,} due over the next hour, then {HOT} due in {LEAD:g} s")
    out: dict[str, Any] = {"n": n}
    bg = Queue("sched-bg", nats_url=url)
    await bg.connection()
    base = time.time()
    rss0 = rss_mib()

    async def enqueue(i: int) -> None:
        due = base + 3600.0 * (i + 0.5) / n
        await bg.enqueue_at(datetime.fromtimestamp(due, UTC), tick, i)

    server_cpu = CpuWindow(server_pid).start()
    secs = await bounded(enqueue, n, window)
    out["enqueue_s"] = secs
    out["enqueue_per_s"] = n / secs
    out["enqueue_server_cpu"] = server_cpu.stop()
    out["client_rss_mib_before"] = rss0
    out["client_peak_rss_mib"] = peak_rss_mib()
    out["server_rss_mib"] = rss_mib(server_pid)
    print(
        f"    enqueued {n:,} in {secs:.1f} s ({n / secs:,.0f}/s); client peak RSS "
        f"{out['client_peak_rss_mib']:.0f} MiB (start {rss0:.0f}); server RSS "
        f"{out['server_rss_mib']:.0f} MiB; server CPU while enqueueing "
        f"{out['enqueue_server_cpu'] * 100:.0f}%",
        flush=True,
    )
    windows = []
    for _ in range(4):  # right after the ingest, then settled
        idle = CpuWindow(server_pid).start()
        await asyncio.sleep(10)
        windows.append(idle.stop())
    out["server_cpu_idle_firing_10s_windows"] = windows
    out["server_cpu_idle_firing"] = windows[-1]
    print(
        f"    server CPU while firing ~{n / 3600:.0f} jobs/s in the background, 10 s windows "
        f"after the ingest: {', '.join(f'{w * 100:.1f}%' for w in windows)} of a core",
        flush=True,
    )
    worker = spawn_naq(["worker", "sched-hot", "-c", "200"], url, tmp / "worker-oneoff.log")
    hot = Queue("sched-hot", nats_url=url)
    store = ResultStore(await hot.connection())
    try:
        await asyncio.sleep(2)  # worker up
        for variant in ("burst", "spread"):
            at = next_whole_second(LEAD)
            due: dict[str, float] = {}

            async def place(
                i: int, at: float = at, variant: str = variant, due: dict[str, float] = due
            ) -> None:
                when = at if variant == "burst" else at + i / HOT
                job = await hot.enqueue_at(datetime.fromtimestamp(when, UTC), tick, i)
                due[job.job_id] = when

            await bounded(place, HOT, 200)
            window_cpu = CpuWindow(server_pid).start()
            await asyncio.sleep(max(0.0, at + 3 - time.time()))
            cpu = window_cpu.stop()
            late = await started_at(store, due)
            out[variant] = summary(variant, late) | {"server_cpu": cpu}
            print(f"    server CPU around the {variant}: {cpu * 100:.1f}%", flush=True)
        out["server_rss_mib_end"] = rss_mib(server_pid)
    finally:
        stop(worker)
        await hot.close()
        await bg.close()
    return out


async def recurring(url: str, n: int, window: int, tmp: Path) -> dict[str, Any]:
    print(f"\n== recurring: {n:,} schedules (each once a minute), then {HOT} due in {LEAD:g} s")
    out: dict[str, Any] = {"n": n}
    scheduler = spawn_naq(["scheduler"], url, tmp / "scheduler.log")
    worker = spawn_naq(["worker", "sched-rhot", "-c", "200"], url, tmp / "worker-rec.log")
    bg = Queue("sched-rbg", nats_url=url)
    hot = Queue("sched-rhot", nats_url=url)
    store = ResultStore(await hot.connection())
    await bg.connection()
    rng = random.Random(7)
    try:
        await asyncio.sleep(2)
        rss0 = rss_mib()

        async def create(i: int) -> None:
            await bg.schedule(tick, i, cron=f"{rng.randrange(60)} * * * * *", schedule_id=f"bg-{i}")

        sched_cpu = CpuWindow(scheduler.pid).start()
        secs = await bounded(create, n, window)
        out["create_s"] = secs
        out["create_per_s"] = n / secs
        out["client_peak_rss_mib"] = peak_rss_mib()
        out["scheduler_cpu_while_creating"] = sched_cpu.stop()
        print(
            f"    created {n:,} in {secs:.1f} s ({n / secs:,.0f}/s); client peak RSS "
            f"{out['client_peak_rss_mib']:.0f} MiB (start {rss0:.0f}); scheduler CPU meanwhile "
            f"{out['scheduler_cpu_while_creating'] * 100:.0f}%",
            flush=True,
        )
        await asyncio.sleep(5)
        steady = CpuWindow(scheduler.pid).start()
        await asyncio.sleep(15)
        out["scheduler_cpu_steady"] = steady.stop()
        out["scheduler_rss_mib"] = rss_mib(scheduler.pid)
        print(
            f"    scheduler steady state (~{n / 60:.0f} runs/s): CPU "
            f"{out['scheduler_cpu_steady'] * 100:.1f}% of a core, RSS "
            f"{out['scheduler_rss_mib']:.0f} MiB",
            flush=True,
        )
        for variant in ("burst", "spread"):
            at = next_whole_second(LEAD + 1)
            due: dict[str, float] = {}

            async def place(
                i: int, at: float = at, variant: str = variant, due: dict[str, float] = due
            ) -> None:
                sid = f"hot-{variant}-{i}"
                if variant == "burst":
                    stamp = datetime.fromtimestamp(at, UTC)
                    cron = f"{stamp.second} {stamp.minute} {stamp.hour} * * *"
                    s = await hot.schedule(tick, i, cron=cron, repeat=1, schedule_id=sid)
                else:
                    gap = at + i / HOT - time.time()
                    s = await hot.schedule(tick, i, interval=gap, repeat=1, schedule_id=sid)
                assert s.next_run is not None
                when = s.next_run.timestamp()
                due[run_job_id(sid, when)] = when

            await bounded(place, HOT, 100)
            window_cpu = CpuWindow(scheduler.pid).start()
            await asyncio.sleep(max(0.0, at + 3 - time.time()))
            cpu = window_cpu.stop()
            fired: list[float] = []
            late = await started_at(store, due, fired=fired)
            out[variant] = summary(variant, late) | {"scheduler_cpu": cpu}
            out[f"{variant}_enqueued"] = summary(
                f"{variant} (due -> enqueued by the scheduler)", fired
            )
            print(f"    scheduler CPU around the {variant}: {cpu * 100:.1f}%", flush=True)
        out["scheduler_rss_mib_end"] = rss_mib(scheduler.pid)
        # hand-over: stop the leader, a new scheduler loads every schedule at election
        stop(scheduler)
        successor = naq.Scheduler(url)
        started = time.monotonic()
        task = asyncio.create_task(successor.run())
        for _ in range(6000):  # up to a minute
            if "loaded" in successor.stats:
                break
            await asyncio.sleep(0.01)
        out["new_leader_ready_s"] = time.monotonic() - started
        out["new_leader_loaded"] = successor.stats.get("loaded")
        out["new_leader_load_ms"] = successor.stats.get("load_ms")
        print(
            f"    a new scheduler was leader with {out['new_leader_loaded']} schedules loaded "
            f"{out['new_leader_ready_s']:.2f} s after start (load {out['new_leader_load_ms']} ms)",
            flush=True,
        )
        await successor.stop()
        await task
    finally:
        stop(scheduler)
        stop(worker)
        await hot.close()
        await bg.close()
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="naq-sched-bench-") as tmpdir:
        tmp = Path(tmpdir)
        with EmbeddedServer() as server:
            assert server.process is not None
            pid = server.process.pid
            print(f"nats-server pid {pid} at {server.url}; logs in {tmp}")
            if args.oneoffs:
                results["one_off"] = await one_offs(server.url, pid, args.oneoffs, args.window, tmp)
            if args.recurring:
                results["recurring"] = await recurring(server.url, args.recurring, args.window, tmp)
            results["server_peak_rss_mib"] = rss_mib(pid, "VmHWM")
        await naq.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--oneoffs", type=int, default=1_000_000)
    parser.add_argument("--recurring", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=500, help="calls in flight while enqueueing")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
