"""Shared limit scenarios (``naq.set_limit``): a rate shared by several worker processes,
and a concurrency-1 family with many keys against the same jobs without limits.

Workers run in their own processes (:mod:`benchmarks.worker_proc`), as for the other naq
rows. Start and end times come from the jobs' records (``started_at``/``finished_at``, the
worker's ``time.time()``; every process shares the machine's clock). Each scenario deletes
its limit at the end, so no later row runs under it, and checks its jobs ran once: each
record completed with one attempt and the workers counted exactly the jobs expected.
A delivery a worker sent back because the limit was full is counted from the queue's
consumer (deliveries beyond one per job).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import naq
from naq import JobInfo, Queue
from naq.constants import JOBS_STREAM, consumer_name

from . import jobs
from .common import Child
from .deps_bench import ran_once, read_infos
from .naq_bench import NaqBench
from .raw import Raw

RATE_QUEUE = "bench-limit-rate"
RATE_LIMIT = "bench-rate"
#: The shared rate, starts per second.
RATE = 200
#: Seconds after the first start that the rate window leaves out (the burst).
RATE_WARMUP_S = 1.0
#: Slack over what the token bucket allows in any one second before the row is an ERROR
#: (a start is stamped a moment after its token was taken).
RATE_SLACK = 0.05
FAMILY_QUEUE = "bench-limit-family"
PLAIN_QUEUE = "bench-limit-plain"
FAMILY = "bench-user:*"
#: Enqueues in flight at once when each job names its own limit (one call per job).
ENQUEUE_CONCURRENCY = 64
#: Seconds a burst worker gets to drain its queue before the scenario gives up on it.
DRAIN_TIMEOUT = 300.0


def rate_burst(rate: int) -> int:
    """Starts a ``rate``/s limit lets through at once (a tenth of its count, at least 1)."""
    return max(1, rate // 10)


def _stamp(value: Any) -> float:
    """Epoch seconds of a record time (``nan`` if it has not happened)."""
    return value.timestamp() if value is not None else float("nan")


def _known(times: Iterable[float]) -> list[float]:
    """``times`` without the ones that have not happened (``nan``)."""
    return [t for t in times if not math.isnan(t)]


def most_in_any_second(starts: list[float]) -> int:
    """The most of the sorted ``starts`` that fall within any one second."""
    most, low = 0, 0
    for high, start in enumerate(starts):
        while start - starts[low] >= 1.0:
            low += 1
        most = max(most, high - low + 1)
    return most


def overlapping_runs(infos: list[JobInfo], key_of: Callable[[int], str]) -> int:
    """Pairs of jobs of one key (``key_of(index)``) whose runs overlapped in time."""
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for i, info in enumerate(infos):
        runs[key_of(i)].append((_stamp(info.started_at), _stamp(info.finished_at)))
    overlaps = 0
    for spans in runs.values():
        spans.sort()
        overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    return overlaps


class LimitsBench:
    """The limit scenarios; borrows the worker helpers of :class:`NaqBench` and the raw
    connection (to read a queue's consumer)."""

    def __init__(self, nats_url: str, naq_bench: NaqBench, raw: Raw) -> None:
        self.url = nats_url
        self.nb = naq_bench
        self.raw = raw

    async def _consumer(self, queue_name: str) -> tuple[int, int]:
        """``(waiting + unacknowledged, deliveries so far)`` of ``queue_name``'s consumer."""
        info = await self.raw.js.consumer_info(JOBS_STREAM, consumer_name(queue_name))
        left = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return left, info.delivered.consumer_seq or 0

    async def _wait_drained(self, queue_name: str, timeout: float) -> bool:
        """Wait until every job of ``queue_name`` was acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left, _ = await self._consumer(queue_name)
            if not left:
                return True
            await asyncio.sleep(0.25)
        return False

    # -- a rate shared by several workers -------------------------------------------------
    async def shared_rate(
        self, n: int, window_s: float, workers: int = 3, concurrency: int = 20
    ) -> dict[str, Any]:
        """``workers`` worker processes (``concurrency`` each) on one queue, then ``n``
        no-op jobs taking a ``RATE``/s limit. ``rate``: starts (records' ``started_at``)
        within ``window_s`` seconds after the first ``RATE_WARMUP_S`` / ``window_s``;
        ``first_second``: starts within a second of the first one (the burst)."""
        await naq.set_limit(RATE_LIMIT, rate=f"{RATE}/s", nats_url=self.url)
        children: list[Child] = []
        done: list[dict[str, Any]] = []
        problems: list[str] = []
        try:
            for _ in range(workers):
                children.append(
                    await Child.start(self.nb.worker_args(RATE_QUEUE, concurrency), self.url)
                )
            for child in children:
                started = await child.wait_event("started", timeout=30)
                await self.nb.wait_registered(started["worker_id"])
            async with Queue(RATE_QUEUE, nats_url=self.url) as queue:
                created = await queue.enqueue_many(
                    [(jobs.noop, (i,)) for i in range(n)], limits=[RATE_LIMIT]
                )
                if not await self._wait_drained(RATE_QUEUE, timeout=2 * n / RATE + 30):
                    problems.append(f"jobs still waiting {2 * n / RATE + 30:.0f} s later")
                done = list(await asyncio.gather(*(c.stop("done") for c in children)))
                infos = await read_infos(queue, [j.job_id for j in created])
                _, deliveries = await self._consumer(RATE_QUEUE)
                await self.nb.cleanup(queue)
        finally:
            for child in children:
                await child.kill()
            await naq.delete_limit(RATE_LIMIT, nats_url=self.url)
        ran = sum(d.get("jobs_done", 0) for d in done)
        if ran != n or any(d.get("jobs_failed") for d in done):
            problems.append(f"the workers ran {ran} jobs, {n} expected")
        problems += ran_once(infos, "jobs")
        starts = sorted(_known(_stamp(i.started_at) for i in infos))
        first = starts[0] if starts else float("nan")
        begin, end = first + RATE_WARMUP_S, first + RATE_WARMUP_S + window_s
        if starts and starts[-1] < end:
            problems.append(f"the jobs ran out {end - starts[-1]:.2f} s before the window ended")
        allowed = rate_burst(RATE) + RATE
        most = most_in_any_second(starts)
        if most > allowed * (1 + RATE_SLACK):
            problems.append(f"{most} jobs started within one second; the limit allows {allowed}")
        by_worker = Counter(info.worker_id for info in infos)
        return {
            "n": n,
            "limit": RATE,
            "workers": workers,
            "concurrency": concurrency,
            "window_s": window_s,
            "rate": sum(1 for s in starts if begin <= s < end) / window_s,
            "first_second": sum(1 for s in starts if s < first + 1.0),
            "burst_allowed": rate_burst(RATE),
            "most_in_any_second": most,
            "overall_rate": (len(starts) - 1) / (starts[-1] - first) if len(starts) > 1 else 0,
            "sent_back": deliveries - n,
            "starts_per_worker": sorted(by_worker.values(), reverse=True),
            "error": "; ".join(problems),
        }

    # -- a concurrency-1 family with many keys --------------------------------------------
    async def family(self, n: int, keys: int, concurrency: int = 200) -> dict[str, Any]:
        """``n`` no-op jobs taking ``bench-user:<i % keys>`` under a concurrency-1 family,
        drained by one burst worker process; no two jobs of a key may overlap."""
        await naq.set_limit(FAMILY, concurrency=1, nats_url=self.url)
        try:
            return await self._drain(
                FAMILY_QUEUE, n, concurrency, lambda i: [f"bench-user:{i % keys}"]
            )
        finally:
            await naq.delete_limit(FAMILY, nats_url=self.url)

    async def plain(self, n: int, concurrency: int = 200) -> dict[str, Any]:
        """The reference of :meth:`family`: the same jobs, enqueue and worker, no limits."""
        return await self._drain(PLAIN_QUEUE, n, concurrency, None)

    async def _drain(
        self,
        queue_name: str,
        n: int,
        concurrency: int,
        limits_of: Callable[[int], list[str]] | None,
    ) -> dict[str, Any]:
        """Enqueue ``n`` no-op jobs one call each (``limits=limits_of(i)``), then drain them
        with a burst worker process. ``rate`` as the no-op processing row (completions the
        worker observed, first to last); ``records_rate``: n / (last finished - first
        started)."""
        gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)
        async with Queue(queue_name, nats_url=self.url) as queue:

            async def one(i: int) -> naq.Job:
                options = {} if limits_of is None else {"limits": limits_of(i)}
                async with gate:
                    return await queue.enqueue(jobs.noop, i, **options)

            t0 = time.perf_counter()
            created = list(await asyncio.gather(*(one(i) for i in range(n))))
            enqueue_s = time.perf_counter() - t0
            child = await Child.start(
                self.nb.worker_args(queue_name, concurrency, "--burst", "--expect", str(n)),
                self.url,
            )
            problems: list[str] = []
            try:
                done = await child.finish("done", timeout=DRAIN_TIMEOUT)
            except TimeoutError:  # a hang is a result too: the other rows still run
                problems.append(f"the worker did not drain the queue in {DRAIN_TIMEOUT:g} s")
                done = {"jobs_done": None, "jobs_failed": None, "last_done": None}
            infos = await read_infos(queue, [j.job_id for j in created])
            checked = await NaqBench.check_results(queue, random.sample(created, min(50, n)))
            _, deliveries = await self._consumer(queue_name)
            await self.nb.cleanup(queue)
        problems += ran_once(infos, "jobs")
        if done["jobs_done"] != n or done["jobs_failed"] or done["last_done"] is None:
            problems.append(
                f"the worker ran {done['jobs_done']} jobs ({done['jobs_failed']} failed), "
                f"{n} expected"
            )
        if checked["wrong"]:
            problems.append(f"{checked['wrong']}/{checked['checked']} sampled results wrong")
        overlaps = 0
        if limits_of is not None:
            overlaps = overlapping_runs(infos, lambda i: limits_of(i)[0])
            if overlaps:
                problems.append(f"{overlaps} pairs of jobs of one key ran at the same time")
        last = done["last_done"]
        first_start = min(_known(_stamp(i.started_at) for i in infos), default=math.nan)
        last_end = max(_known(_stamp(i.finished_at) for i in infos), default=math.nan)
        return {
            "n": n,
            "concurrency": concurrency,
            "enqueue_rate": n / enqueue_s,
            "rate": (
                (n - done["done_at_first"]) / (last - done["first_done"])
                if last is not None
                else float("nan")
            ),
            "records_rate": n / (last_end - first_start),
            "sent_back": deliveries - n,
            "overlaps": overlaps,
            "error": "; ".join(problems),
        }
