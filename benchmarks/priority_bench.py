"""Priority scenarios: urgent jobs enqueued while a worker works through a backlog, and the
enqueue → start latency of priority jobs on an idle worker.

One worker process (:mod:`benchmarks.worker_proc`) works through a backlog of 2 ms
priority-0 jobs; once part of it is done, priority-9 jobs are enqueued one at a time. Two
rounds on the same worker: ``cold`` (the worker has never seen a priority-9 job of the queue,
so the first one also sets up its pull) and ``warm`` (it pulls priority 9 already). Start
times come from the jobs' records (``started_at``, the worker's ``time.time()``); enqueue
times are taken by the driver on the same clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import naq
from naq import JobInfo, Queue

from . import jobs
from .common import Child, percentile
from .deps_bench import ran_once, read_infos
from .naq_bench import NaqBench

QUEUE = "bench-prio"
HIGH_PRIORITY = 9
LATENCY_QUEUE = "bench-prio-lat"
#: Part of the backlog done before the high-priority jobs are enqueued.
HEAD_START = 0.1
#: An idle-worker latency sample above this is a stall (counted in the JSON and the note).
STALL_MS = 100.0


class NotFinal(RuntimeError):
    """Jobs of the scenario were not final in time."""


class PriorityBench:
    """The priority scenarios; borrow the worker helpers of :class:`NaqBench`."""

    def __init__(self, nats_url: str, naq_bench: NaqBench) -> None:
        self.url = nats_url
        self.nb = naq_bench

    async def overtaking(self, backlog: int, high: int, concurrency: int = 10) -> dict[str, Any]:
        """Both rounds (see :meth:`_round`) on one worker process of ``concurrency``
        threads. ``overtaken`` is the worse round's; the latency percentiles pool the high
        jobs of both rounds."""
        child = await Child.start(self.nb.worker_args(QUEUE, concurrency), self.url)
        rounds: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        try:
            started = await child.wait_event("started", timeout=30)
            await self.nb.wait_registered(started["worker_id"])
            async with Queue(QUEUE, nats_url=self.url) as queue:
                try:
                    for name in ("cold", "warm"):
                        rounds[name] = await self._round(queue, backlog, high)
                except NotFinal as exc:  # a hang is a result too: the other rows still run
                    problems.append(str(exc))
                await self.nb.cleanup(queue)
        finally:
            done = await child.stop("done")
        expect = 2 * (backlog + high)
        if not problems and (done.get("jobs_done") != expect or done.get("jobs_failed")):
            problems.append(f"the worker ran {done.get('jobs_done')} jobs, {expect} expected")
        for name, result in rounds.items():
            problems += [f"{name}: {p}" for p in result.pop("problems")]
        latency_ms = [ms for result in rounds.values() for ms in result["latency_ms"]]
        return {
            "backlog": backlog,
            "high": high,
            "concurrency": concurrency,
            "overtaken": max((r["overtaken"] for r in rounds.values()), default=float("nan")),
            "high_start_p50": percentile(latency_ms, 50),
            "high_start_p99": percentile(latency_ms, 99),
            **rounds,
            "error": "; ".join(problems),
        }

    async def idle_latency(self, samples: int, warmup: int = 20) -> dict[str, Any]:
        """The plain latency scenario with priority-9 jobs: an idle worker process
        (concurrency 10), one ``stamp()`` job at a time; ms from just before ``enqueue`` to
        the job's start. ``stalls`` counts samples above ``STALL_MS``."""
        child = await Child.start(self.nb.worker_args(LATENCY_QUEUE, 10), self.url)
        to_start: list[float] = []
        error = ""
        try:
            started = await child.wait_event("started", timeout=30)
            await self.nb.wait_registered(started["worker_id"])
            await asyncio.sleep(0.5)
            async with Queue(LATENCY_QUEUE, nats_url=self.url) as queue:
                for i in range(warmup + samples):
                    sent = time.time()
                    job = await queue.enqueue(jobs.stamp, priority=HIGH_PRIORITY)
                    try:
                        began = await job.result(timeout=5)
                    except naq.NaqError as exc:
                        error = f"sample {i}: {type(exc).__name__}: {exc}"
                        break
                    if i >= warmup:
                        to_start.append((began - sent) * 1000)
                await self.nb.cleanup(queue)
        finally:
            await child.stop("done")
        return {
            "samples": len(to_start),
            "start_p50": percentile(to_start, 50),
            "start_p99": percentile(to_start, 99),
            "start_max": max(to_start, default=float("nan")),
            "stalls": sum(1 for ms in to_start if ms > STALL_MS),
            "error": error,
        }

    async def _round(self, queue: Queue, backlog: int, high: int) -> dict[str, Any]:
        """``backlog`` low jobs, then (once ``HEAD_START`` of them are done) ``high``
        priority-9 jobs enqueued one by one; every job's record read once all are final.

        ``overtaken``: low jobs started after the first high job was enqueued and before the
        last high job started. ``overtook_waiting``: low jobs started while some high job
        was stored (its enqueue had returned) and not started yet: what a strict priority
        order would allow is the low jobs the worker already held."""
        low = await queue.enqueue_many([(jobs.sleep2, (i,)) for i in range(backlog)])
        await _wait_final(queue, [low[int(backlog * HEAD_START)].job_id], timeout=30)
        sent: list[float] = []
        stored: list[float] = []
        high_jobs = []
        for i in range(high):
            sent.append(time.time())
            high_jobs.append(await queue.enqueue(jobs.sleep2, i, priority=HIGH_PRIORITY))
            stored.append(time.time())
        high_infos = await _wait_final(queue, [j.job_id for j in high_jobs], timeout=30)
        low_infos = await _wait_final(queue, [j.job_id for j in low], timeout=60)
        problems = ran_once(high_infos, "high jobs") + ran_once(low_infos, "backlog jobs")
        high_starts = [_stamp(i.started_at) for i in high_infos]
        low_starts = [_stamp(i.started_at) for i in low_infos]
        last_high_start = max(high_starts)
        waiting = list(zip(stored, high_starts, strict=True))
        latency_ms = [(s - e) * 1000 for e, s in zip(sent, high_starts, strict=True)]
        left = sum(1 for s in low_starts if s > sent[0])
        if left < backlog // 2:  # the measurement needs a backlog to overtake
            problems.append(f"only {left} backlog jobs were left when the first high job came")
        last_high_done = max(_stamp(i.finished_at) for i in high_infos)
        return {
            "overtaken": sum(1 for s in low_starts if sent[0] < s < last_high_start),
            "overtook_waiting": sum(1 for s in low_starts if any(a < s < b for a, b in waiting)),
            "high_start_p50": percentile(latency_ms, 50),
            "high_start_p99": percentile(latency_ms, 99),
            "high_start_max": max(latency_ms),
            "first_high_start_ms": latency_ms[0],
            "high_enqueue_s": stored[-1] - sent[0],
            "backlog_left_at_first_high": left,
            "backlog_done_after_last_high": sum(
                1 for i in low_infos if _stamp(i.finished_at) > last_high_done
            ),
            "latency_ms": latency_ms,
            "problems": problems,
        }


def _stamp(value: Any) -> float:
    """Epoch seconds of a record time (``nan`` if it has not happened)."""
    return value.timestamp() if value is not None else float("nan")


async def _wait_final(queue: Queue, job_ids: list[str], timeout: float) -> list[JobInfo]:
    """The records of ``job_ids`` (in order) once every one of them is final."""
    infos = await read_infos(queue, job_ids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [i for i, info in enumerate(infos) if not info.status.is_final]
        if not pending:
            return infos
        if time.monotonic() > deadline:
            raise NotFinal(f"{len(pending)} jobs of {QUEUE} not final after {timeout} s")
        await asyncio.sleep(0.005 if len(pending) == 1 else 0.05)
        fresh = await read_infos(queue, [job_ids[i] for i in pending])
        for i, info in zip(pending, fresh, strict=True):
            infos[i] = info
