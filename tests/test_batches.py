"""enqueue_many's batch records against a real nats-server: one ``batch.<id>`` record per
chunk stands for its jobs' ``pending`` state until a worker writes each job's own record."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats.js.errors
import pytest
from tests import jobs

import naq
import naq.bulk
from conftest import JOBS_STREAM, RESULTS_STREAM, WAIT, raw_nats, stream_count
from naq import JobStatus
from naq.batches import BatchRecord, decode_batch
from naq.results import ResultStore
from naq.settings import load_settings
from naq.transport import Connection

BATCH_JOB_ID = re.compile(r"^([0-9a-f]{32})-(\d+)$")


def batch_of(job_id: str) -> tuple[str, int]:
    found = BATCH_JOB_ID.match(job_id)
    assert found, f"{job_id!r} is not shaped <32 hex>-<n>"
    return found.group(1), int(found.group(2))


def batch_subject(batch_id: str) -> str:
    return f"$KV.naq_results.batch.{batch_id}"


def record_subject(job_id: str) -> str:
    return f"$KV.naq_results.{job_id}"


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[ResultStore]:
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        yield ResultStore(conn)
    finally:
        await conn.close()


async def read_batch(nats_url: str, batch_id: str) -> tuple[BatchRecord, dict[str, str]]:
    """The stored batch record and its headers."""
    async with raw_nats(nats_url) as nc:
        msg = await nc.jetstream().get_last_msg(RESULTS_STREAM, batch_subject(batch_id))
    assert msg.data is not None
    return decode_batch(msg.data), dict(msg.headers or {})


# --------------------------------------------------------------------------- pending state


async def test_enqueued_batch_jobs_are_pending_with_their_function_and_queue(
    nats_url: str, queue: str
) -> None:
    calls = [(jobs.add, (i, i)) for i in range(25)]
    async with naq.Queue(queue, nats_url=nats_url) as q:
        enqueued = await q.enqueue_many(calls)

        assert len(enqueued) == 25
        ids = [job.job_id for job in enqueued]
        parts = [batch_of(job_id) for job_id in ids]
        batch_ids = {batch_id for batch_id, _ in parts}
        assert len(batch_ids) == 1  # 25 jobs: one chunk
        assert [n for _, n in parts] == list(range(25))
        assert all(job.function == "tests.jobs:add" for job in enqueued)
        assert all(job.queue_name == queue for job in enqueued)

        for job in enqueued:
            assert await q.get_job_status(job.job_id) == JobStatus.PENDING
            info = await q.get_job_info(job.job_id)
            assert info.job_id == job.job_id
            assert info.status == JobStatus.PENDING
            assert info.function == "tests.jobs:add"
            assert info.queue_name == queue
            assert info.attempts == []
            assert info.worker_id is None and info.started_at is None
            assert info.enqueued_at is not None
            assert abs(info.enqueued_at.timestamp() - job.enqueued_at) < 60
            with pytest.raises(naq.JobNotFoundError, match="not finished"):
                await q.fetch_job_result(job.job_id)

    # the module-level API answers the same
    assert await naq.get_job_status(ids[-1], nats_url=nats_url) == JobStatus.PENDING
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}") == 25


async def test_batch_options_show_in_the_pending_info(nats_url: str, queue: str) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.echo, (i,)) for i in range(3)],
        queue_name=queue,
        nats_url=nats_url,
        max_retries=4,
        result_ttl=600,
    )
    info = await naq.get_job_info(enqueued[2].job_id, nats_url=nats_url)
    assert info.status == JobStatus.PENDING
    assert info.max_retries == 4
    assert info.function == "tests.jobs:echo"

    batch_id, _ = batch_of(enqueued[0].job_id)
    batch, headers = await read_batch(nats_url, batch_id)
    assert batch.batch_id == batch_id
    assert batch.count == 3
    assert batch.queue_name == queue
    assert batch.functions == ["tests.jobs:echo"]
    assert batch.max_retries == 4
    assert headers.get("Nats-TTL") == "600"  # the batch record expires like job records


async def test_one_results_write_per_chunk_not_per_job(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url=nats_url) as q:
        await q.enqueue(jobs.add, 0, 0)  # the results bucket exists from here on
        before = await stream_count(nats_url, RESULTS_STREAM)
        enqueued = await q.enqueue_many([(jobs.add, (i, 1)) for i in range(300)])
        after = await stream_count(nats_url, RESULTS_STREAM)

    assert len(enqueued) == 300
    assert after - before == 1
    batch_id, _ = batch_of(enqueued[0].job_id)
    assert await stream_count(nats_url, RESULTS_STREAM, batch_subject(batch_id)) == 1
    assert await stream_count(nats_url, RESULTS_STREAM, record_subject(enqueued[5].job_id)) == 0
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}") == 301


async def test_chunks_of_batch_size_each_get_one_record(
    nats_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(naq.bulk, "BATCH_SIZE", 7)
    pattern = [jobs.add, jobs.echo_kwargs, jobs.echo_kwargs, jobs.add, jobs.add]
    calls: list[tuple[Any, ...]] = []
    for i in range(20):
        func = pattern[i % len(pattern)]
        calls.append((func, (i, 1), {}) if func is jobs.add else (func, (), {"i": i}))

    async with naq.Queue(queue, nats_url=nats_url) as q:
        await q.enqueue(jobs.add, 0, 0)  # the results bucket exists from here on
        before = await stream_count(nats_url, RESULTS_STREAM)
        enqueued = await q.enqueue_many(calls)
        after = await stream_count(nats_url, RESULTS_STREAM)
        assert after - before == 3

        parts = [batch_of(job.job_id) for job in enqueued]
        batch_ids = list(dict.fromkeys(batch_id for batch_id, _ in parts))
        assert len(batch_ids) == 3
        assert [n for _, n in parts] == [*range(7), *range(7), *range(6)]
        chunked = [batch_ids[0]] * 7 + [batch_ids[1]] * 7 + [batch_ids[2]] * 6
        assert [batch_id for batch_id, _ in parts] == chunked

        expected = [
            "tests.jobs:add" if pattern[i % len(pattern)] is jobs.add else "tests.jobs:echo_kwargs"
            for i in range(20)
        ]
        assert [job.function for job in enqueued] == expected
        for job, function in zip(enqueued, expected, strict=True):
            info = await q.get_job_info(job.job_id)
            assert (info.status, info.function, info.queue_name) == (
                JobStatus.PENDING,
                function,
                queue,
            )

    counts = []
    for batch_id in batch_ids:
        batch, _ = await read_batch(nats_url, batch_id)
        counts.append(batch.count)
        assert set(batch.functions) <= {"tests.jobs:add", "tests.jobs:echo_kwargs"}
    assert counts == [7, 7, 6]


async def test_single_function_chunk_after_a_mixed_one(
    nats_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(naq.bulk, "BATCH_SIZE", 3)
    funcs = [jobs.add, jobs.echo, jobs.add, jobs.echo, jobs.echo, jobs.echo, jobs.add]
    calls = [(f, (1, 2)) if f is jobs.add else (f, (1,)) for f in funcs]
    enqueued = await naq.enqueue_many(calls, queue_name=queue, nats_url=nats_url)
    names = [f"tests.jobs:{f.__name__}" for f in funcs]
    got = [(await naq.get_job_info(job.job_id, nats_url=nats_url)).function for job in enqueued]
    assert got == names


# --------------------------------------------------------------------------- unknown ids


async def test_batch_shaped_ids_outside_the_batch_are_not_found(nats_url: str, queue: str) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.add, (i, i)) for i in range(4)], queue_name=queue, nats_url=nats_url
    )
    batch_id, _ = batch_of(enqueued[0].job_id)
    assert await naq.get_job_status(f"{batch_id}-3", nats_url=nats_url) == JobStatus.PENDING

    unknown = [
        f"{batch_id}-4",  # one past the end
        f"{batch_id}-999999999",
        f"{uuid.uuid4().hex}-0",  # no such batch
        f"{uuid.uuid4().hex}-3",
    ]
    for job_id in unknown:
        with pytest.raises(naq.JobNotFoundError):
            await naq.get_job_status(job_id, nats_url=nats_url)
        with pytest.raises(naq.JobNotFoundError):
            await naq.get_job_info(job_id, nats_url=nats_url)
        with pytest.raises(naq.JobNotFoundError):
            await naq.fetch_job_result(job_id, nats_url=nats_url)
    with pytest.raises(naq.JobNotFoundError):
        await naq.fetch_job_result(f"{batch_id}-4", timeout=0.3, nats_url=nats_url)


async def test_batch_index_with_leading_zero_is_not_a_job(nats_url: str, queue: str) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.add, (i, i)) for i in range(3)], queue_name=queue, nats_url=nats_url
    )
    batch_id, _ = batch_of(enqueued[0].job_id)
    assert await naq.get_job_status(f"{batch_id}-1", nats_url=nats_url) == JobStatus.PENDING
    # regression: '<batch>-01' once answered as a pending job 1 (one spelling per job)
    for alias in (f"{batch_id}-01", f"{batch_id}-00", f"{batch_id}-0002"):
        with pytest.raises(naq.JobNotFoundError):
            await naq.get_job_status(alias, nats_url=nats_url)


async def test_enqueue_many_refuses_a_job_id(nats_url: str, queue: str) -> None:
    with pytest.raises(naq.ConfigurationError, match="job_id"):
        await naq.enqueue_many(
            [(jobs.add, (1, 2))], queue_name=queue, nats_url=nats_url, job_id="mine"
        )
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}") == 0


# --------------------------------------------------------------------------- with a worker


async def test_batch_jobs_run_and_their_results_come_back(
    nats_url: str, queue: str, running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(naq.bulk, "BATCH_SIZE", 8)
    calls = [(jobs.add if i % 2 else jobs.async_add, (i, 100)) for i in range(30)]
    enqueued = await naq.enqueue_many(calls, queue_name=queue, nats_url=nats_url)
    assert len({batch_of(job.job_id)[0] for job in enqueued}) == 4

    async with running_worker([queue], nats_url, concurrency=4) as worker:
        results = [
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
            for job in enqueued
        ]
    assert results == [i + 100 for i in range(30)]

    for i, job in enumerate(enqueued):
        info = await naq.get_job_info(job.job_id, nats_url=nats_url)
        assert info.status == JobStatus.COMPLETED
        assert info.function == ("tests.jobs:add" if i % 2 else "tests.jobs:async_add")
        assert info.queue_name == queue
        assert info.worker_id == worker.worker_id
        assert len(info.attempts) == 1
        # the job has a record of its own now
        assert await stream_count(nats_url, RESULTS_STREAM, record_subject(job.job_id)) >= 1


async def test_failing_batch_job_is_reported_failed(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.add, (1, 2)), (jobs.fail, ("batch boom",)), (jobs.add, (3, 4))],
        queue_name=queue,
        nats_url=nats_url,
    )
    async with running_worker([queue], nats_url):
        assert await enqueued[0].result(timeout=WAIT) == 3
        with pytest.raises(naq.JobExecutionError, match="batch boom"):
            await enqueued[1].result(timeout=WAIT)
        assert await enqueued[2].result(timeout=WAIT) == 7
    assert await naq.get_job_status(enqueued[1].job_id, nats_url=nats_url) == JobStatus.FAILED


# --------------------------------------------------------------------------- compare-and-set


async def test_compare_and_set_on_a_synthesized_record(
    nats_url: str, queue: str, store: ResultStore
) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.add, (i, i)) for i in range(3)], queue_name=queue, nats_url=nats_url
    )
    job_id = enqueued[1].job_id

    found = await store.get_entry(job_id)
    assert found is not None
    record, revision = found
    assert revision == 0
    assert record.job_id == job_id
    assert record.status == JobStatus.PENDING.value
    assert (record.function, record.queue_name) == ("tests.jobs:add", queue)

    record.status = JobStatus.RUNNING.value
    record.progress = 0.5
    assert await store.update(record, 0, 600) is True

    found = await store.get_entry(job_id)
    assert found is not None
    mine, revision = found
    assert revision > 0
    assert mine.status == JobStatus.RUNNING.value
    assert mine.progress == 0.5
    assert mine.function == "tests.jobs:add"
    assert await stream_count(nats_url, RESULTS_STREAM, record_subject(job_id)) == 1

    # a second writer that also read revision 0 loses
    record.progress = 0.9
    assert await store.update(record, 0, 600) is False
    assert (await store.get_entry(job_id)) == (mine, revision)

    # the current revision wins, and moves the revision on
    mine.progress = 0.75
    assert await store.update(mine, revision, 600) is True
    found = await store.get_entry(job_id)
    assert found is not None and found[1] > revision and found[0].progress == 0.75
    assert await store.update(mine, revision, 600) is False  # stale now

    # the other jobs of the batch still answer from the batch record
    for other in (enqueued[0], enqueued[2]):
        entry = await store.get_entry(other.job_id)
        assert entry is not None
        assert (entry[0].status, entry[1]) == (JobStatus.PENDING.value, 0)
    assert await naq.get_job_status(job_id, nats_url=nats_url) == JobStatus.RUNNING


async def test_get_entry_of_an_unknown_batch_job_is_none(store: ResultStore) -> None:
    assert await store.get_entry(f"{uuid.uuid4().hex}-0") is None
    assert await store.get(f"{uuid.uuid4().hex}-5") is None


async def test_a_corrupt_batch_record_reads_as_not_found(nats_url: str, store: ResultStore) -> None:
    batch_id = uuid.uuid4().hex
    await store.ready()
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        await js.publish(batch_subject(batch_id), b"{not json")
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.get_last_msg(RESULTS_STREAM, record_subject(f"{batch_id}-0"))
    assert await store.get_entry(f"{batch_id}-0") is None
    with pytest.raises(naq.JobNotFoundError):
        await naq.get_job_status(f"{batch_id}-0", nats_url=nats_url)
