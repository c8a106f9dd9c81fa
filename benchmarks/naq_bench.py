"""naq scenarios: enqueue, processing, latency, sleep jobs and worker memory.

Each scenario uses its own queue; workers run in their own process
(:mod:`benchmarks.worker_proc`), started from the repository root.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import naq
from naq import Queue
from naq.settings import load_settings

from . import jobs
from .common import Child, percentile, proc_status_mib

#: The worker_proc argument that turns signing on (its value: the key, used by both sides).
SIGNING_FLAG = "--signing-key"
#: The key of the signed rows (made up here; 16+ bytes).
BENCH_SIGNING_KEY = "bench-signing-key-0123456789"
RESULTS_STREAM = "KV_naq_results"  # naq's results bucket, purged between scenarios


class NaqBench:
    """The naq side of every scenario."""

    def __init__(
        self, nats_url: str, purge_results: Callable[[], Any], use_uvloop: bool = False
    ) -> None:
        self.url = nats_url
        self.uvloop = use_uvloop
        self._purge_results = purge_results

    async def cleanup(self, queue: Queue) -> None:
        """Purge ``queue`` and naq's results bucket (the next scenario starts empty)."""
        await queue.purge()
        await self._purge_results()

    # -- enqueue ---------------------------------------------------------------------------
    async def enqueue_sequential(self, n: int) -> float:
        """``await queue.enqueue(noop, i)`` one at a time; jobs/s."""
        async with Queue("bench-seq", nats_url=self.url) as queue:
            for i in range(min(50, n)):  # warm-up: connection, stream and bucket lookups
                await queue.enqueue(jobs.noop, i)
            t0 = time.perf_counter()
            for i in range(n):
                await queue.enqueue(jobs.noop, i)
            rate = n / (time.perf_counter() - t0)
            await self.cleanup(queue)
        return rate

    def enqueue_sync_sequential(self, n: int) -> float:
        """``naq.enqueue_sync(noop, i)`` one at a time from plain (non-async) code; jobs/s."""
        for i in range(min(50, n)):
            naq.enqueue_sync(jobs.noop, i, queue_name="bench-sync", nats_url=self.url)
        t0 = time.perf_counter()
        for i in range(n):
            naq.enqueue_sync(jobs.noop, i, queue_name="bench-sync", nats_url=self.url)
        rate = n / (time.perf_counter() - t0)
        naq.purge_queue_sync("bench-sync", nats_url=self.url)
        naq.run_sync(naq.close())
        return rate

    async def enqueue_many(self, n: int) -> float:
        """``queue.enqueue_many([(noop, (i,)) ...])`` for ``n`` jobs at once; jobs/s."""
        async with Queue("bench-many", nats_url=self.url) as queue:
            await queue.enqueue_many([(jobs.noop, (i,)) for i in range(min(500, n))])
            calls = [(jobs.noop, (i,)) for i in range(n)]
            t0 = time.perf_counter()
            await queue.enqueue_many(calls)
            rate = n / (time.perf_counter() - t0)
            await self.cleanup(queue)
        return rate

    # -- workers ---------------------------------------------------------------------------
    def worker_args(self, queue: str, concurrency: int, *extra: str) -> list[str]:
        """``Child.start`` arguments of a :mod:`benchmarks.worker_proc` worker on ``queue``."""
        args = ["benchmarks.worker_proc", "--queue", queue, "--concurrency", str(concurrency)]
        args += list(extra)
        return [*args, "--uvloop"] if self.uvloop else args

    async def _burst(
        self,
        queue_name: str,
        func: Any,
        args: list[tuple[Any, ...]],
        concurrency: int,
        *extra: str,
    ) -> tuple[dict[str, Any], float, list[naq.Job], Queue]:
        """Pre-fill ``args`` jobs, run a burst worker process (with ``extra`` arguments of
        :mod:`benchmarks.worker_proc`) until it drained them."""
        settings = load_settings(self.url)
        if SIGNING_FLAG in extra:  # the producer signs with the worker's key
            key = extra[extra.index(SIGNING_FLAG) + 1]
            settings = dataclasses.replace(settings, signing_keys=(key.encode(),))
        queue = Queue(queue_name, settings=settings)
        created = await queue.enqueue_many([(func, a) for a in args])
        spawned = time.time()
        child = await Child.start(
            self.worker_args(
                queue_name, concurrency, "--burst", "--expect", str(len(args)), *extra
            ),
            self.url,
        )
        done = await child.finish("done", timeout=180)
        if done["last_done"] is None or done["jobs_failed"]:
            raise RuntimeError(f"naq {queue_name}: worker reported {done}\n{child.stderr_tail()}")
        return done, spawned, created, queue

    async def process(
        self, queue_name: str, func: Any, n: int, concurrency: int, *extra: str
    ) -> dict[str, Any]:
        """``n`` pre-filled no-op jobs, results stored, drained by a burst worker process
        (``extra``: its further arguments, e.g. ``--events``).

        jobs/s = jobs finished between the first and the last observed completion / that time
        (worker start-up excluded); ``with_startup`` counts from spawning the process.
        """
        done, spawned, created, queue = await self._burst(
            queue_name, func, [(i,) for i in range(n)], concurrency, *extra
        )
        try:
            checked = await self.check_results(queue, random.sample(created, min(50, n)))
            await self.cleanup(queue)
        finally:
            await queue.close()
        first, last = done["first_done"], done["last_done"]
        return {
            "n": n,
            "concurrency": concurrency,
            "rate": (n - done["done_at_first"]) / (last - first),
            "with_startup": n / (last - spawned),
            "worker_cpu_pct": 100 * done["cpu_s"] / (last - first),
            "peak_rss_mib": done["peak_rss_mib"],
            "end_rss_mib": done["rss_mib"],
            **checked,
        }

    @staticmethod
    async def check_results(queue: Queue, sample: list[naq.Job]) -> dict[str, Any]:
        """Spot-check stored outcomes: status ``completed`` and the right return value."""
        statuses: Counter[str] = Counter()
        wrong = 0
        for job in sample:
            info = await queue.get_job_info(job.job_id)
            statuses[info.status.value] += 1
            try:
                ok = await queue.fetch_job_result(job.job_id) == job.args[0]
            except naq.NaqError:
                ok = False
            wrong += not ok
        return {"checked": len(sample), "wrong": wrong, "statuses": dict(statuses)}

    async def sleep_drain(
        self, queue_name: str, func: Any, n: int, concurrency: int
    ) -> dict[str, Any]:
        """``n`` pre-filled 10 ms sleep jobs at ``concurrency``: seconds from the first job's
        start to the last job's stored result (``with_startup``: from spawning the worker)."""
        done, spawned, _created, queue = await self._burst(queue_name, func, [()] * n, concurrency)
        try:
            await self.cleanup(queue)
        finally:
            await queue.close()
        return {
            "n": n,
            "concurrency": concurrency,
            "drain_s": done["last_done"] - done["first_job_start"],
            "with_startup_s": done["last_done"] - spawned,
            "ideal_s": n * 0.01 / concurrency,
        }

    async def latency(self, samples: int, func: Any, warmup: int = 20) -> dict[str, Any]:
        """An idle worker process (concurrency 10); one job at a time: ms from just before
        ``enqueue`` to the job's start (``func`` returns ``time.time()``) and to
        ``await job.result()`` returning. Also the worker's idle RSS."""
        child = await Child.start(self.worker_args("bench-lat", 10), self.url)
        to_start: list[float] = []
        to_result: list[float] = []
        error: str | None = None
        try:
            started = await child.wait_event("started", timeout=30)
            await self.wait_registered(started["worker_id"])
            await asyncio.sleep(1.0)
            idle_rss = proc_status_mib("VmRSS", child.pid)
            async with Queue("bench-lat", nats_url=self.url) as queue:
                for i in range(warmup + samples):
                    sent_wall = time.time()
                    t0 = time.perf_counter()
                    job = await queue.enqueue(func)
                    try:
                        began = await job.result(timeout=5)
                    except naq.NaqError as exc:
                        error = f"sample {i}: {type(exc).__name__}: {exc}"
                        break
                    t1 = time.perf_counter()
                    if i >= warmup:
                        to_start.append((began - sent_wall) * 1000)
                        to_result.append((t1 - t0) * 1000)
                await asyncio.sleep(0.5)
                after_rss = proc_status_mib("VmRSS", child.pid)
                await self.cleanup(queue)
        finally:
            await child.stop("done")
        return {
            "samples": samples,
            "start_p50": percentile(to_start, 50),
            "start_p99": percentile(to_start, 99),
            "result_p50": percentile(to_result, 50),
            "result_p99": percentile(to_result, 99),
            "idle_rss_mib": idle_rss,
            "idle_rss_after_mib": after_rss,
            "error": error,
        }

    async def wait_registered(self, worker_id: str, timeout: float = 30.0) -> None:
        """Wait until the worker ``worker_id`` is listed (it consumes from then on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = await naq.list_workers(nats_url=self.url)
            if any(w.worker_id == worker_id for w in workers):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"worker {worker_id} did not register within {timeout} s")

    async def cli_idle_rss(self) -> float | None:
        """RSS of an idle ``naq worker`` CLI process (what users run), MiB."""
        child = await Child.start(["naq", "worker", "bench-cli", "-n", "benchcli"], self.url)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                workers = await naq.list_workers(nats_url=self.url)
                if any(w.worker_id.startswith("benchcli-") for w in workers):
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"naq worker CLI did not register:\n{child.stderr_tail()}")
            await asyncio.sleep(1.0)
            return proc_status_mib("VmRSS", child.pid)
        finally:
            await child.stop()
