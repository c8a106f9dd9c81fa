"""Job dependency scenarios (``depends_on``): release latency, fan-in and fan-out.

Workers run in their own process (:mod:`benchmarks.worker_proc`), as for the other naq rows.
Times come from the jobs' own records (``started_at``/``finished_at``, set by the worker
with ``time.time()``) or from the jobs themselves (``stamp`` returns its start time); the
driver and the worker share the machine's clock. Every scenario checks its jobs ran once:
each record has one attempt and the worker counted exactly the jobs expected.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import naq
from naq import JobInfo, JobStatus, Queue

from . import jobs
from .common import Child, percentile
from .naq_bench import NaqBench

#: Records read at once when checking a scenario's jobs.
READ_CONCURRENCY = 64


async def read_infos(queue: Queue, job_ids: Iterable[str]) -> list[JobInfo]:
    """The records of ``job_ids``, read ``READ_CONCURRENCY`` at a time, in order."""
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(job_id: str) -> JobInfo:
        async with gate:
            return await queue.get_job_info(job_id)

    return list(await asyncio.gather(*(one(job_id) for job_id in job_ids)))


def _stamp(value: Any) -> float:
    """Epoch seconds of a record time (``nan`` if it has not happened)."""
    return value.timestamp() if value is not None else float("nan")


def ran_once(infos: list[JobInfo], what: str) -> list[str]:
    """Problems among ``infos``: a job not completed, or run more or less than once."""
    statuses = Counter(info.status.value for info in infos)
    attempts = Counter(len(info.attempts) for info in infos)
    problems = []
    if statuses[JobStatus.COMPLETED.value] != len(infos):
        problems.append(f"{what}: statuses {dict(statuses)}")
    if attempts[1] != len(infos):
        problems.append(f"{what}: attempts per record {dict(attempts)}")
    return problems


class DepsBench:
    """The dependency scenarios; borrows the worker helpers of :class:`NaqBench`."""

    def __init__(self, nats_url: str, naq_bench: NaqBench) -> None:
        self.url = nats_url
        self.nb = naq_bench

    async def _burst(self, queue_name: str, expect: int, concurrency: int) -> dict[str, Any]:
        """Run a burst worker process on ``queue_name`` until its queue is empty."""
        child = await Child.start(
            self.nb.worker_args(queue_name, concurrency, "--burst", "--expect", str(expect)),
            self.url,
        )
        done = await child.finish("done", timeout=600)
        done["stderr_tail"] = child.stderr_tail(1000) if done["jobs_failed"] else ""
        return done

    @staticmethod
    def _worker_count(done: dict[str, Any], expect: int) -> list[str]:
        if done["jobs_done"] == expect and not done["jobs_failed"]:
            return []
        return [
            f"the worker ran {done['jobs_done']} jobs ({done['jobs_failed']} failed), "
            f"{expect} expected"
        ]

    # -- release latency ------------------------------------------------------------------
    async def release_latency(
        self, samples: int, warmup: int = 20, hold_s: float = 0.01
    ) -> dict[str, Any]:
        """An idle worker process (concurrency 10), one pair at a time: a parent blocking
        ``hold_s`` and a dependant enqueued while it runs (``stamp``, returns its start
        time). Latency = dependant's start - parent's ``finished_at`` (its record). A pair
        whose dependant was stored only after the parent finished (released by the producer,
        not the worker) is not a sample; ``raced`` counts them."""
        child = await Child.start(self.nb.worker_args("bench-dep-lat", 10), self.url)
        gaps: list[float] = []
        defer_ms: list[float] = []
        raced = 0
        error: str | None = None
        try:
            started = await child.wait_event("started", timeout=30)
            await self.nb.wait_registered(started["worker_id"])
            await asyncio.sleep(0.5)
            async with Queue("bench-dep-lat", nats_url=self.url) as queue:
                for i in range(warmup + samples):
                    parent = await queue.enqueue(jobs.hold, hold_s)
                    t0 = time.perf_counter()
                    dependant = await queue.enqueue(jobs.stamp, depends_on=parent)
                    deferred_in = time.perf_counter() - t0
                    linked = time.time()
                    try:
                        began = await dependant.result(timeout=5)
                    except naq.NaqError as exc:
                        error = f"pair {i}: {type(exc).__name__}: {exc}"
                        break
                    finished = _stamp((await queue.get_job_info(parent.job_id)).finished_at)
                    if i < warmup:
                        continue
                    if linked >= finished:
                        raced += 1
                        continue
                    gaps.append((began - finished) * 1000)
                    defer_ms.append(deferred_in * 1000)
                await self.nb.cleanup(queue)
        finally:
            await child.stop("done")
        if error is None and raced > samples // 10:
            error = f"{raced} of {samples} parents finished before their dependant was stored"
        return {
            "samples": len(gaps),
            "raced": raced,
            "hold_s": hold_s,
            "release_p50": percentile(gaps, 50),
            "release_p99": percentile(gaps, 99),
            "release_max": max(gaps, default=float("nan")),
            "defer_enqueue_p50": percentile(defer_ms, 50),
            "defer_enqueue_p99": percentile(defer_ms, 99),
            "error": error,
        }

    # -- fan-in ---------------------------------------------------------------------------
    async def fan_in(self, n: int, concurrency: int = 200) -> dict[str, Any]:
        """``n`` no-op parents (one ``enqueue_many``), then one job depending on all of them
        (it returns how many dependency results it saw); then a burst worker process runs
        them all. ``wall_s`` = the enqueue (first parent → child stored) + the run (first
        parent start → child finished); the worker's start-up in between is not counted.
        ``parents_rate``: parents / (last parent finished - first started)."""
        queue_name = "bench-dep-fanin"
        async with Queue(queue_name, nats_url=self.url) as queue:
            await queue.enqueue(jobs.noop, -1)  # warm-up: connection, stream, bucket
            await self.nb.cleanup(queue)
            t0 = time.perf_counter()
            parents = await queue.enqueue_many([(jobs.noop, (i,)) for i in range(n)])
            t1 = time.perf_counter()
            dependant = await queue.enqueue(jobs.count_dependency_results, depends_on=parents)
            enqueue_s = time.perf_counter() - t0
            deferred = (await queue.get_job_info(dependant.job_id)).status
            done = await self._burst(queue_name, n + 1, concurrency)
            infos = await read_infos(queue, [p.job_id for p in parents])
            child = await queue.get_job_info(dependant.job_id)
            problems = self._worker_count(done, n + 1) + ran_once(infos, "parents")
            problems += ran_once([child], "the fan-in job")
            if deferred != JobStatus.DEFERRED:
                problems.append(f"the fan-in job was {deferred.value} right after enqueue")
            seen: Any = None
            if child.status == JobStatus.COMPLETED:
                seen = await queue.fetch_job_result(dependant.job_id)
                if seen != n:
                    problems.append(f"the fan-in job saw {seen} dependency results, not {n}")
            await self.nb.cleanup(queue)
        first_start = min(_stamp(i.started_at) for i in infos)
        last_parent = max(_stamp(i.finished_at) for i in infos)
        run_s = _stamp(child.finished_at) - first_start
        return {
            "n": n,
            "concurrency": concurrency,
            "enqueue_parents_s": t1 - t0,
            "enqueue_fan_in_job_s": enqueue_s - (t1 - t0),
            "run_s": run_s,
            "wall_s": enqueue_s + run_s,
            "release_s": _stamp(child.started_at) - last_parent,
            "parents_rate": n / (last_parent - first_start),
            "fan_in_job_attempts": len(child.attempts),
            "dependency_results_seen": seen,
            "worker_jobs_done": done["jobs_done"],
            "error": "; ".join(problems),
        }

    async def plain_burst(self, n: int, concurrency: int = 200) -> dict[str, Any]:
        """The reference of :meth:`fan_in`: ``n`` no-op jobs nobody depends on, the same
        enqueue and burst worker; rate = jobs / (last finished - first started)."""
        queue_name = "bench-dep-plain"
        async with Queue(queue_name, nats_url=self.url) as queue:
            created = await queue.enqueue_many([(jobs.noop, (i,)) for i in range(n)])
            done = await self._burst(queue_name, n, concurrency)
            infos = await read_infos(queue, [j.job_id for j in created])
            problems = self._worker_count(done, n) + ran_once(infos, "jobs")
            await self.nb.cleanup(queue)
        first_start = min(_stamp(i.started_at) for i in infos)
        last = max(_stamp(i.finished_at) for i in infos)
        return {"n": n, "rate": n / (last - first_start), "error": "; ".join(problems)}

    # -- fan-out --------------------------------------------------------------------------
    async def fan_out(self, n: int, concurrency: int = 200) -> dict[str, Any]:
        """One no-op parent, then ``enqueue_many(..., depends_on=parent)`` of ``n`` no-op
        children (timed), then a burst worker process runs them. ``drain_s`` = parent
        finished → last child finished (records); every child must have run once."""
        queue_name = "bench-dep-fanout"
        async with Queue(queue_name, nats_url=self.url) as queue:
            parent = await queue.enqueue(jobs.noop, -1)
            calls = [(jobs.noop, (i,)) for i in range(n)]
            t0 = time.perf_counter()
            children = await queue.enqueue_many(calls, depends_on=parent)
            enqueue_s = time.perf_counter() - t0
            done = await self._burst(queue_name, n + 1, concurrency)
            parent_info = await queue.get_job_info(parent.job_id)
            infos = await read_infos(queue, [j.job_id for j in children])
            problems = self._worker_count(done, n + 1) + ran_once(infos, "children")
            problems += ran_once([parent_info], "the parent")
            checked = await NaqBench.check_results(queue, random.sample(children, min(50, n)))
            if checked["wrong"]:
                problems.append(f"{checked['wrong']}/{checked['checked']} sampled results wrong")
            await self.nb.cleanup(queue)
        parent_done = _stamp(parent_info.finished_at)
        drain_s = max(_stamp(i.finished_at) for i in infos) - parent_done
        return {
            "n": n,
            "concurrency": concurrency,
            "enqueue_s": enqueue_s,
            "enqueue_rate": n / enqueue_s,
            "first_release_s": min(_stamp(i.started_at) for i in infos) - parent_done,
            "drain_s": drain_s,
            "rate": n / drain_s,
            "worker_jobs_done": done["jobs_done"],
            "error": "; ".join(problems),
        }
