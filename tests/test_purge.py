"""Purging a queue against a real nats-server: the waiting jobs leave the stream and their
records say ``cancelled`` (purged), so nobody waits for them in vain."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from tests import jobs
from tests.cli_run import naq_cli

import naq
from conftest import JOBS_STREAM, WAIT, stream_count
from naq import JobCancelledError, JobStatus
from naq.models import JobEnvelope, encode
from naq.purge import PURGED_ERROR_TYPE
from naq.settings import load_settings
from naq.transport import Connection


async def assert_purged(nats_url: str, queue: str, job_id: str) -> None:
    info = await naq.get_job_info(job_id, nats_url=nats_url)
    assert info.status is JobStatus.CANCELLED, info
    assert info.error_type == PURGED_ERROR_TYPE
    assert info.error == f"purged from queue {queue}"
    assert info.finished_at is not None
    assert info.queue_name == queue
    assert info.function.endswith("add")
    with pytest.raises(JobCancelledError):
        await naq.fetch_job_result(job_id, nats_url=nats_url)


async def test_purged_jobs_of_enqueue_and_enqueue_many_are_cancelled(
    nats_url: str, queue: str
) -> None:
    single = [
        await naq.enqueue(jobs.add, i, 1, queue_name=queue, nats_url=nats_url) for i in range(5)
    ]
    many = await naq.enqueue_many(
        [(jobs.add, (i, 1)) for i in range(7)], queue_name=queue, nats_url=nats_url
    )
    assert await naq.purge_queue(queue, nats_url=nats_url) == 12
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}") == 0
    for job in [*single, *many]:
        await assert_purged(nats_url, queue, job.job_id)
    assert await naq.purge_queue(queue, nats_url=nats_url) == 0


async def test_a_waiter_is_woken_by_the_purge(nats_url: str, queue: str) -> None:
    single = await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
    [batched] = await naq.enqueue_many([(jobs.add, (1, 2))], queue_name=queue, nats_url=nats_url)

    async def wait(job_id: str) -> float:
        with pytest.raises(JobCancelledError):
            await naq.fetch_job_result(job_id, timeout=30, nats_url=nats_url)
        return time.monotonic()

    waiters = [asyncio.create_task(wait(j.job_id)) for j in (single, batched)]
    await asyncio.sleep(0.5)  # both are waiting
    assert not any(w.done() for w in waiters)
    purged_at = time.monotonic()
    assert await naq.purge_queue(queue, nats_url=nats_url) == 2
    # well inside the 30 s timeout (bounded here so the test fails fast without the fix)
    woken = await asyncio.wait_for(asyncio.gather(*waiters), 5.0)
    assert all(t - purged_at < 1.5 for t in woken), [t - purged_at for t in woken]


async def test_a_large_purge_spanning_pages_and_another_queue(nats_url: str, queue: str) -> None:
    other = f"{queue[:40]}-other"
    ours: list[naq.Job] = []
    for _ in range(3):  # interleaved with another queue's messages in the stream
        ours += await naq.enqueue_many(
            [(jobs.add, (i, 1)) for i in range(2500)], queue_name=queue, nats_url=nats_url
        )
        await naq.enqueue_many(
            [(jobs.add, (i, 1)) for i in range(1000)], queue_name=other, nats_url=nats_url
        )
        ours.append(await naq.enqueue(jobs.add, 0, 1, queue_name=queue, nats_url=nats_url))
    kept = await naq.enqueue(jobs.add, 0, 1, queue_name=other, nats_url=nats_url)

    assert await naq.purge_queue(queue, nats_url=nats_url) == len(ours) == 7503
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}") == 0
    for job in ours[::500] + ours[2490:2510] + ours[-3:]:
        await assert_purged(nats_url, queue, job.job_id)
    # the other queue keeps its jobs, pending
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{other}") == 3001
    assert await naq.get_job_status(kept.job_id, nats_url=nats_url) is JobStatus.PENDING


async def test_a_finished_job_is_left_alone(nats_url: str, queue: str, running_worker: Any) -> None:
    async with running_worker([queue], nats_url):
        done = await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
        assert await naq.fetch_job_result(done.job_id, timeout=WAIT, nats_url=nats_url) == 3
    # its message again in the queue (a redelivery, say): the purge removes the message only
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        envelope = JobEnvelope(id=done.job_id, fn="tests.jobs:add", queue=queue, args=[1, 2])
        await conn.publish(f"naq.queue.{queue}", encode(envelope))
    finally:
        await conn.close()
    assert await naq.purge_queue(queue, nats_url=nats_url) == 1
    assert await naq.get_job_status(done.job_id, nats_url=nats_url) is JobStatus.COMPLETED


async def test_a_message_claiming_another_queues_job_does_not_cancel_it(
    nats_url: str, queue: str
) -> None:
    other = f"{queue[:40]}-other"
    victim = await naq.enqueue(jobs.add, 1, 2, queue_name=other, nats_url=nats_url)
    [batched] = await naq.enqueue_many([(jobs.add, (1, 2))], queue_name=other, nats_url=nats_url)
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        for job_id in (victim.job_id, batched.job_id):
            for claimed_queue in (queue, other):  # naming our queue, or the victim's
                envelope = JobEnvelope(id=job_id, fn="tests.jobs:add", queue=claimed_queue)
                await conn.publish(f"naq.queue.{queue}", encode(envelope))
        await conn.publish(f"naq.queue.{queue}", b"not json at all")
    finally:
        await conn.close()
    assert await naq.purge_queue(queue, nats_url=nats_url) == 5
    for job in (victim, batched):
        assert await naq.get_job_status(job.job_id, nats_url=nats_url) is JobStatus.PENDING


def test_cli_purge_force_prints_the_count_and_cancels(nats_url: str) -> None:
    queue = f"pq-{uuid.uuid4().hex[:8]}"

    async def enqueue() -> list[str]:
        try:
            found = [await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)]
            found += await naq.enqueue_many(
                [(jobs.add, (i, 1)) for i in range(2)], queue_name=queue, nats_url=nats_url
            )
            return [job.job_id for job in found]
        finally:
            await naq.close()

    job_ids = asyncio.run(enqueue())
    proc = naq_cli("purge", queue, "--force", "-u", nats_url)
    assert proc.code == 0, proc.stderr
    assert proc.stdout.strip() == f"purged 3 jobs from {queue}"

    async def check() -> None:
        try:
            for job_id in job_ids:
                await assert_purged(nats_url, queue, job_id)
        finally:
            await naq.close()

    asyncio.run(check())
