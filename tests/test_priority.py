"""Priorities inside one queue (``priority=0..9``, higher starts first): real server, real
workers, in this process and in separate ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tests.dep_jobs import started_at, step
from tests.worker_procs import WorkerProcesses, wait_until

import naq
from naq import JobStatus


async def _times(q: naq.Queue, jobs: list[naq.Job]) -> list[tuple[float, float]]:
    """(started, finished) of each job, epoch seconds."""
    out = []
    for job in jobs:
        info = await q.get_job_info(job.job_id)
        assert info.started_at is not None and info.finished_at is not None
        out.append((info.started_at.timestamp(), info.finished_at.timestamp()))
    return out


@pytest.mark.asyncio
async def test_high_priority_overtakes_a_backlog(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        low = await q.enqueue_many([(step, (f"low{i}", 0.01), {}) for i in range(300)])
        async with running_worker([queue], nats_url, concurrency=4):
            await asyncio.sleep(0.3)  # the backlog is being worked through
            asked = time.time()
            high = [await q.enqueue(step, f"high{i}", 0.01, priority=9) for i in range(20)]
            assert await high[-1].result(timeout=20) == "high19"
            for job in high:
                await job.result(timeout=20)
            await low[-1].result(timeout=30)
            high_times = await _times(q, high)
            low_times = await _times(q, low)
    first_high_start = min(start for start, _ in high_times)
    last_high_start = max(start for start, _ in high_times)
    # a backlog was there to overtake: most of it started after every high job
    after = [start for start, _ in low_times if start > last_high_start]
    assert len(after) >= 100, f"only {len(after)} backlog jobs were left to overtake"
    # until the worker sees the new priority (a consumer to set up) the backlog goes on
    # running; how long that takes depends on the machine's load, so it is bounded loosely
    before = [start for start, _ in low_times if asked < start < last_high_start]
    assert len(before) < 50, f"{len(before)} backlog jobs started before the last high one"
    # once high jobs run, only what the worker already held (its 4 slots, plus a pull in
    # flight) goes between them
    between = [start for start, _ in low_times if first_high_start < start < last_high_start]
    assert len(between) <= 8, f"{len(between)} backlog jobs started among the high ones"
    assert max(end for _, end in high_times) < max(end for _, end in low_times)


@pytest.mark.asyncio
async def test_priority_is_checked_at_the_call(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        for bad in (10, -1, True, 1.5, "9"):
            with pytest.raises(naq.ConfigurationError, match="priority"):
                await q.enqueue(step, "x", priority=bad, job_id="never-stored")
        with pytest.raises(naq.JobNotFoundError):
            await q.get_job_info("never-stored")
        assert not [i for i in await naq.list_queues(nats_url=nats_url) if i.name == queue]


@pytest.mark.asyncio
async def test_listing_purge_and_burst_see_every_priority(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        async with naq.Queue(queue, nats_url) as _:
            pass
        # a consumer for the listing to find, then waiting jobs on three priorities
        worker = naq.Worker([queue], nats_url=nats_url, burst=True)
        await asyncio.wait_for(worker.run(), 20)
        await q.enqueue(step, "a")
        await q.enqueue(step, "b", priority=5)
        await q.enqueue(step, "c", priority=5)
        urgent = await q.enqueue(step, "d", priority=9)
        burst = naq.Worker([queue], nats_url=nats_url, burst=True, concurrency=1)
        await asyncio.wait_for(burst.run(), 20)
        assert await urgent.result(timeout=5) == "d"
        for priority in (0, 3, 3, 7):
            await q.enqueue(step, "w", priority=priority)
        info = next(i for i in await naq.list_queues(nats_url=nats_url) if i.name == queue)
        assert info.waiting == 4
        assert info.waiting_by_priority == {0: 1, 3: 2, 7: 1}
        assert await q.purge() == 4
        info = next(i for i in await naq.list_queues(nats_url=nats_url) if i.name == queue)
        assert info.waiting == 0 and info.waiting_by_priority == {}


@pytest.mark.asyncio
async def test_scheduled_and_released_jobs_keep_their_priority(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        later = await q.enqueue_in(0.2, step, "later", priority=7)
        parent = await q.enqueue(step, "p")
        child = await q.enqueue(step, "child", priority=8, depends_on=parent)
        async with running_worker([queue], nats_url, concurrency=2):
            assert await later.result(timeout=10) == "later"
            assert await child.result(timeout=10) == "child"
        assert (await q.get_job_info(child.job_id)).status == JobStatus.COMPLETED


def test_high_priority_first_with_worker_processes(
    nats_url: str, queue: str, tmp_path: Path
) -> None:
    """20 high-priority jobs enqueued after 300 low ones, two worker processes: every high
    one finishes before the low ones are done."""
    low = naq.enqueue_many_sync(
        [(step, (f"low{i}", 0.02), {}) for i in range(300)], queue_name=queue, nats_url=nats_url
    )
    workers = WorkerProcesses(tmp_path)
    try:
        for _ in range(2):
            workers.start([queue], nats_url, "-c", "4")
        workers.wait_listed(nats_url, *workers.procs)
        wait_until(
            lambda: naq.get_job_status_sync(low[20].job_id, nats_url=nats_url).is_final,
            20,
            "the backlog is being worked through",
        )
        high = [
            naq.enqueue_sync(step, f"h{i}", 0.02, priority=9, queue_name=queue, nats_url=nats_url)
            for i in range(20)
        ]
        for job in high:
            naq.fetch_job_result_sync(job.job_id, timeout=30, nats_url=nats_url)
        last_high = max(
            naq.get_job_info_sync(j.job_id, nats_url=nats_url).finished_at for j in high
        )
        naq.fetch_job_result_sync(low[-1].job_id, timeout=60, nats_url=nats_url)
        unfinished_low = [
            j
            for j in low
            if (info := naq.get_job_info_sync(j.job_id, nats_url=nats_url)).finished_at is None
            or info.finished_at > last_high
        ]
        assert len(unfinished_low) > 100, workers.all_logs()
    finally:
        workers.close()
        naq.run_sync(naq.close())


@pytest.mark.asyncio
async def test_an_idle_worker_starts_a_priority_job_at_once(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    """The worker hears of a priority job before the stream stored it: its "none yet"
    answer must not leave the job waiting for the once-a-second re-check."""
    async with (
        naq.Queue(queue, nats_url) as q,
        running_worker([queue], nats_url, concurrency=10),
    ):
        late = []
        for _ in range(200):
            asked = time.time()
            job = await q.enqueue(started_at, priority=9)
            waited = await job.result(timeout=10) - asked
            if waited > 0.1:
                late.append(round(waited, 3))
    assert not late, f"priority jobs that waited: {late}"
