"""The worker against a real nats-server: concurrency, threads, burst, status, acks."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any

import pytest
from tests import helpers, jobs

import naq
from conftest import WAIT, raw_nats, stream_count, wait_for
from naq import JobStatus
from naq.results import ResultStore
from naq.transport import ConsumerSettings
from naq.worker import pipeline


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """Most intervals running at the same moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, delta in events:  # at equal times -1 sorts first: touching intervals don't overlap
        running += delta
        peak = max(peak, running)
    return peak


# --------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("func", [jobs.sleep_sync, jobs.sleep_async], ids=["sync", "async"])
async def test_jobs_run_concurrently_up_to_concurrency(
    nats_url: str, queue: str, running_worker: Any, func: Any
) -> None:
    enqueued = await naq.enqueue_many(
        [(func, (0.5,)) for _ in range(4)], queue_name=queue, nats_url=nats_url
    )
    async with running_worker([queue], nats_url, concurrency=4):
        results = await asyncio.gather(*(job.result(timeout=WAIT) for job in enqueued))

    starts = [start for start, _, _ in results]
    ends = [end for _, end, _ in results]
    assert max(starts) < min(ends), "the 4 jobs did not all run at the same time"
    assert max(ends) - min(starts) < 1.6  # sequentially they would need 2 s


async def test_sync_and_async_jobs_run_side_by_side(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.sleep_sync, (0.5,)), (jobs.sleep_async, (0.5,))] * 2,
        queue_name=queue,
        nats_url=nats_url,
    )
    async with running_worker([queue], nats_url, concurrency=4):
        results = await asyncio.gather(*(job.result(timeout=WAIT) for job in enqueued))
    assert max(r[0] for r in results) < min(r[1] for r in results)


async def test_sync_jobs_run_in_naq_job_threads_async_jobs_on_the_loop(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    loop_thread = threading.current_thread().name
    sync_job = await naq.enqueue(jobs.thread_name, queue_name=queue, nats_url=nats_url)
    async_job = await naq.enqueue(jobs.async_thread_name, queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        sync_thread = await sync_job.result(timeout=WAIT)
        async_thread = await async_job.result(timeout=WAIT)

    assert sync_thread.startswith("naq-job-")
    assert sync_thread != loop_thread
    assert async_thread == loop_thread


async def test_thread_pool_is_sized_to_concurrency(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.sleep_sync, (0.3,)) for _ in range(6)], queue_name=queue, nats_url=nats_url
    )
    async with running_worker([queue], nats_url, concurrency=2):
        results = await asyncio.gather(*(job.result(timeout=WAIT) for job in enqueued))

    assert max_overlap([(start, end) for start, end, _ in results]) == 2
    threads = {name for _, _, name in results}
    assert 1 <= len(threads) <= 2
    assert all(name.startswith("naq-job-") for name in threads)


# --------------------------------------------------------------------------- burst


async def test_burst_worker_returns_once_the_queue_is_drained(nats_url: str, queue: str) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.add, (i, 1)) for i in range(10)], queue_name=queue, nats_url=nats_url
    )
    worker = naq.Worker([queue], nats_url=nats_url, concurrency=3, burst=True)
    await asyncio.wait_for(worker.run(), WAIT)

    assert worker.jobs_done == 10
    for i, job in enumerate(enqueued):
        assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.COMPLETED
        assert await naq.fetch_job_result(job.job_id, nats_url=nats_url) == i + 1
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 0


async def test_burst_worker_on_empty_queue_returns(nats_url: str, queue: str) -> None:
    worker = naq.Worker([queue], nats_url=nats_url, burst=True)
    await asyncio.wait_for(worker.run(), WAIT)
    assert worker.jobs_done == 0
    assert worker.jobs_failed == 0


async def test_burst_worker_serves_several_queues(nats_url: str, queue: str) -> None:
    queues = [f"{queue}-a", f"{queue}-b"]
    first = await naq.enqueue(jobs.add, 1, 2, queue_name=queues[0], nats_url=nats_url)
    second = await naq.enqueue(jobs.async_add, 3, 4, queue_name=queues[1], nats_url=nats_url)
    await asyncio.wait_for(naq.Worker(queues, nats_url=nats_url, burst=True).run(), WAIT)
    assert await naq.fetch_job_result(first.job_id, nats_url=nats_url) == 3
    assert await naq.fetch_job_result(second.job_id, nats_url=nats_url) == 7


# --------------------------------------------------------------------------- worker status


async def test_running_worker_is_listed_with_its_running_job_and_gone_after_stop(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.sleep_sync, 1.5, queue_name=queue, nats_url=nats_url)
    async with running_worker(
        [queue], nats_url, concurrency=3, heartbeat_interval=0.2, worker_name="lister"
    ) as worker:

        async def busy() -> naq.WorkerInfo | None:
            for info in await naq.list_workers(nats_url=nats_url):
                if info.worker_id == worker.worker_id and job.job_id in info.running_jobs:
                    return info
            return None

        info = await wait_for(busy, timeout=10)
        assert info.worker_id.startswith("lister-")
        assert info.hostname == socket.gethostname()
        assert info.pid == os.getpid()
        assert info.queues == [queue]
        assert info.concurrency == 3
        assert info.status == "running"
        assert info.started_at <= info.last_heartbeat

        await job.result(timeout=WAIT)

        async def idle() -> naq.WorkerInfo | None:
            for found in await naq.list_workers(nats_url=nats_url):
                if found.worker_id == worker.worker_id and found.jobs_done == 1:
                    return found
            return None

        done = await wait_for(idle, timeout=10)
        assert done.running_jobs == []

    listed = [w.worker_id for w in await naq.list_workers(nats_url=nats_url)]
    assert worker.worker_id not in listed


async def test_list_queues_counts_waiting_jobs_and_workers(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with running_worker([queue], nats_url, heartbeat_interval=0.2):

        async def listed() -> naq.QueueInfo | None:
            for info in await naq.list_queues(nats_url=nats_url):
                if info.name == queue and info.workers == 1:
                    return info
            return None

        info = await wait_for(listed, timeout=10)
        assert info.waiting == 0


# --------------------------------------------------------------------------- acks and context


async def test_completed_job_is_acked_and_removed_from_the_stream(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.add, 2, 2, queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        assert await job.result(timeout=WAIT) == 4
    # the worker has stopped (and flushed): whatever it held is settled by now
    async with raw_nats(nats_url) as nc:
        info = await nc.jetstream().consumer_info("NAQ_JOBS", f"naq-{queue}")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    assert info.num_redelivered == 0
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 0
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.COMPLETED


@pytest.mark.parametrize(
    "func", [jobs.context_info, jobs.async_context_info], ids=["sync", "async"]
)
async def test_current_job_inside_a_job(
    nats_url: str, queue: str, running_worker: Any, func: Any
) -> None:
    job = await naq.enqueue(func, queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        context = await job.result(timeout=WAIT)
    assert context == {"job_id": job.job_id, "attempt": 1, "queue_name": queue}


def test_current_job_outside_a_job_raises() -> None:
    with pytest.raises(naq.NaqException):
        naq.current_job()


@pytest.mark.parametrize(
    ("func", "arg", "expected"),
    [
        (jobs.async_return_now, 7, JobStatus.COMPLETED),
        (jobs.async_fail_now, "instant", JobStatus.FAILED),
    ],
    ids=["returns", "raises"],
)
async def test_async_job_that_never_suspends_keeps_its_final_status(
    nats_url: str, queue: str, burst: Any, func: Any, arg: Any, expected: JobStatus
) -> None:
    job = await naq.enqueue(func, arg, queue_name=queue, nats_url=nats_url)
    worker = await burst([queue], nats_url)
    assert worker.jobs_done + worker.jobs_failed == 1  # it ran, and its outcome was stored
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == expected


async def test_jobs_ending_around_the_running_write_keep_their_final_status(
    nats_url: str, queue: str, burst: Any
) -> None:
    delay = float(getattr(pipeline, "RUNNING_WRITE_DELAY", 0.02))
    calls = [
        (jobs.sleep_sync if i % 2 else jobs.sleep_async, (delay * (0.9 + (i % 7) * 0.05),))
        for i in range(300)
    ]
    enqueued = await naq.enqueue_many(calls, queue_name=queue, nats_url=nats_url)
    worker = await burst([queue], nats_url, concurrency=8)
    assert worker.jobs_done == 300

    statuses = await asyncio.gather(
        *(naq.get_job_status(job.job_id, nats_url=nats_url) for job in enqueued)
    )
    stale = [s for s in statuses if s != JobStatus.COMPLETED]
    assert stale == [], f"{len(stale)} of 300 completed jobs show {set(stale)}"


async def test_redelivered_job_whose_outcome_is_stored_is_acked_not_rerun(
    nats_url: str, queue: str, tmp_path: Any
) -> None:
    """The worker that stored the outcome died before its ack arrived: the job's next
    delivery finds a final record and is acknowledged without running again."""
    calls = tmp_path / "calls"
    async with naq.Queue(queue, nats_url=nats_url) as q:
        job = await q.enqueue(jobs.count_call, str(calls))
        conn = await q.connection()
        durable = await conn.ensure_consumer(queue, ConsumerSettings(ack_wait=30))
        store = ResultStore(conn)
        async with raw_nats(nats_url) as nc:  # a "worker" that takes the job and dies
            sub = await nc.jetstream().pull_subscribe_bind(durable, stream="NAQ_JOBS")
            [msg] = await sub.fetch(1, timeout=WAIT)
            record = await store.get(job.job_id)
            assert record is not None
            record.status, record.result = JobStatus.COMPLETED.value, 7
            await store.put(record, 60)  # ... after storing the outcome, before its ack
            await msg.nak()
        worker = naq.Worker([queue], nats_url=nats_url, burst=True)
        await asyncio.wait_for(worker.run(), WAIT)

        assert not calls.exists()  # never ran again
        assert await q.fetch_job_result(job.job_id) == 7
        assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 0


async def test_worker_exits_with_an_error_when_the_server_drops_its_connection(
    nats_url: str, queue: str
) -> None:
    """A server that ends a connection after a protocol error (as for an over-size message)
    leaves nats-py closed for good; the worker must not linger as a process doing nothing."""
    worker = naq.Worker([queue], nats_url=nats_url, concurrency=2)
    task = asyncio.create_task(worker.run())

    async def connected() -> bool:
        return worker._conn is not None and worker._conn.is_connected

    await wait_for(connected)
    assert worker._conn is not None
    # What nats-py does when it reads a server's -ERR (e.g. for a message over max_payload,
    # which naq itself never sends): it closes the client for good, no reconnect. The same
    # call nats-py makes on that line.
    await worker._conn.nc._process_err("'Maximum Payload Violation'")
    with pytest.raises(naq.NaqConnectionError, match="lost NATS"):
        await asyncio.wait_for(task, WAIT)


async def test_a_progress_message_larger_than_max_payload_is_cut_not_fatal(
    nats_url: str, queue: str
) -> None:
    async with helpers.queue_worker(queue, nats_url) as worker:
        job = await naq.enqueue(jobs.huge_progress, 2_000_000, queue_name=queue, nats_url=nats_url)
        assert await job.result(timeout=WAIT) == "done"
        assert worker._conn is not None and worker._conn.is_connected
        assert worker._conn.reconnects == 0
        later = await naq.enqueue(jobs.add, 2, 2, queue_name=queue, nats_url=nats_url)
        assert await later.result(timeout=WAIT) == 4
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.progress_message is not None and len(info.progress_message) <= 1000
