"""``enqueue_many(..., atomic=True)`` against a real nats-server: the jobs are one JetStream
atomic batch, so NATS stores every one of them or none (and then naq leaves no trace)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.api import RawStreamMsg, StreamConfig
from tests import jobs

import naq
import naq.bulk
from conftest import JOBS_STREAM, RESULTS_STREAM, WAIT, raw_nats, stream_count, stream_messages
from naq import JobStatus
from naq.settings import load_settings
from naq.transport import Connection, atomic


def subject_of(queue: str) -> str:
    return f"naq.queue.{queue}"


async def stored_jobs(nats_url: str, queue: str) -> list[RawStreamMsg]:
    """Every job message stored for ``queue``, oldest first."""
    return await stream_messages(nats_url, JOBS_STREAM, subject_of(queue))


async def stored_counts(nats_url: str) -> tuple[int, int]:
    """Messages in the jobs stream and in the results bucket's stream."""
    return await stream_count(nats_url, JOBS_STREAM), await stream_count(nats_url, RESULTS_STREAM)


async def jobs_stream_config(nats_url: str) -> StreamConfig:
    async with raw_nats(nats_url) as nc:
        config: StreamConfig = (await nc.jetstream().stream_info(JOBS_STREAM)).config
    return config


@contextlib.asynccontextmanager
async def jobs_stream_changed(nats_url: str, **changes: Any) -> AsyncIterator[None]:
    """NAQ_JOBS with ``changes`` to its configuration while the block runs."""
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        original = (await js.stream_info(JOBS_STREAM)).config
        changed = StreamConfig.from_response(original.as_dict())
        for name, value in changes.items():
            setattr(changed, name, value)
        await js.update_stream(changed)
        try:
            yield
        finally:
            await js.update_stream(original)


@pytest.fixture
async def queue_obj(nats_url: str, queue: str) -> AsyncIterator[naq.Queue]:
    """An open queue whose connection has set up naq's storage already."""
    async with naq.Queue(queue, nats_url=nats_url) as q:
        conn = await q.connection()
        await conn.ensure_jobs_stream()
        yield q


# --------------------------------------------------------------------------- stored, run


async def test_atomic_batch_of_three_jobs_all_run(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    calls = [(jobs.add, (1, 2)), (jobs.echo, ("two",)), (jobs.add, (3, 4))]
    async with naq.Queue(queue, nats_url=nats_url) as q:
        enqueued = await q.enqueue_many(calls, atomic=True, max_retries=2)
        assert len(enqueued) == 3
        batch_id = enqueued[0].job_id.split("-")[0]
        assert [job.job_id for job in enqueued] == [f"{batch_id}-{n}" for n in range(3)]
        for job in enqueued:
            info = await q.get_job_info(job.job_id)
            assert info.status == JobStatus.PENDING
            assert info.max_retries == 2

        # one atomic batch, numbered and committed by its last message
        stored = await stored_jobs(nats_url, queue)
        assert [msg.headers and msg.headers.get("Nats-Msg-Id") for msg in stored] == [
            job.job_id for job in enqueued
        ]
        batch_headers = [
            (
                (msg.headers or {}).get(atomic.HEADER_BATCH_ID),
                (msg.headers or {}).get(atomic.HEADER_BATCH_SEQUENCE),
            )
            for msg in stored
        ]
        assert batch_headers == [(batch_id, "1"), (batch_id, "2"), (batch_id, "3")]
        assert (stored[-1].headers or {}).get(atomic.HEADER_BATCH_COMMIT) == "1"

        async with running_worker([queue], nats_url):
            results = [await job.result(timeout=WAIT) for job in enqueued]
        assert results == [3, "two", 7]
        for job in enqueued:
            assert await q.get_job_status(job.job_id) == JobStatus.COMPLETED


async def test_a_batch_of_one_and_an_empty_one(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url=nats_url) as q:
        assert await q.enqueue_many([], atomic=True) == []
        (job,) = await q.enqueue_many([(jobs.add, (1, 1))], atomic=True)
        assert await q.get_job_status(job.job_id) == JobStatus.PENDING
    (stored,) = await stored_jobs(nats_url, queue)
    assert (stored.headers or {}).get(atomic.HEADER_BATCH_COMMIT) == "1"  # first and commit


async def test_exactly_1000_jobs_are_one_batch(nats_url: str, queue: str) -> None:
    enqueued = await naq.enqueue_many(
        [(jobs.add, (i, 0)) for i in range(1000)], queue_name=queue, nats_url=nats_url, atomic=True
    )
    assert len(enqueued) == 1000
    assert await stream_count(nats_url, JOBS_STREAM, subject_of(queue)) == 1000
    assert await naq.get_job_status(enqueued[999].job_id, nats_url=nats_url) == JobStatus.PENDING
    assert await naq.purge_queue(queue, nats_url=nats_url) == 1000


# --------------------------------------------------------------------------- refused


async def test_a_batch_the_server_refuses_leaves_nothing(
    nats_url: str, queue: str, queue_obj: naq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream limit makes the server drop the middle job: it refuses the commit, so the
    jobs before and after it are not stored either, and their pending state is removed."""
    batch_id = uuid.uuid4().hex
    monkeypatch.setattr(naq.bulk, "new_job_id", lambda: batch_id)
    calls = [(jobs.echo, ("small",)), (jobs.echo, ("x" * 4000,)), (jobs.echo, ("small",))]
    before = await stored_counts(nats_url)
    async with jobs_stream_changed(nats_url, max_msg_size=2048):
        with pytest.raises(naq.ServerError, match="atomic batch of 3 jobs was refused") as info:
            await queue_obj.enqueue_many(calls, atomic=True)
        assert info.value.err_code == 10176  # batch incomplete: the big job was dropped
        assert "nothing of it was stored" in str(info.value)

        assert await stored_jobs(nats_url, queue) == []
        assert await stored_counts(nats_url) == before  # the batch record is gone too
        for n in range(3):
            with pytest.raises(naq.JobNotFoundError):
                await queue_obj.get_job_status(f"{batch_id}-{n}")

        # the same limit without atomic=True: the jobs around the big one are stored
        with pytest.raises(naq.ServerError):
            await queue_obj.enqueue_many(calls)
        assert len(await stored_jobs(nats_url, queue)) == 2
    assert await queue_obj.purge() == 2


async def test_a_stream_that_does_not_allow_atomic_batches_refuses_them(
    nats_url: str, queue: str, queue_obj: naq.Queue
) -> None:
    before = await stored_counts(nats_url)
    async with jobs_stream_changed(nats_url, allow_atomic=False):
        with pytest.raises(naq.ServerError, match="atomic publish is disabled") as info:
            await queue_obj.enqueue_many([(jobs.add, (1, 2))] * 2, atomic=True)
        assert info.value.err_code == 10174
    assert await stored_counts(nats_url) == before


async def test_the_jobs_stream_is_reconciled_to_allow_atomic_batches(
    nats_url: str, queue: str
) -> None:
    await naq.enqueue(jobs.add, 0, 0, queue_name=queue, nats_url=nats_url)  # storage exists
    await naq.close()
    async with raw_nats(nats_url) as nc:
        config = (await nc.jetstream().stream_info(JOBS_STREAM)).config
        config.allow_atomic = False
        await nc.jetstream().update_stream(config)
    assert not (await jobs_stream_config(nats_url)).allow_atomic

    enqueued = await naq.enqueue_many(
        [(jobs.add, (1, 2))] * 2, queue_name=queue, nats_url=nats_url, atomic=True
    )
    assert len(enqueued) == 2
    assert (await jobs_stream_config(nats_url)).allow_atomic
    assert await naq.purge_queue(queue, nats_url=nats_url) == 3


# --------------------------------------------------------------------------- bad input


async def test_more_than_1000_calls_are_refused_before_anything_is_sent(
    nats_url: str, queue: str, queue_obj: naq.Queue
) -> None:
    before = await stored_counts(nats_url)
    with pytest.raises(naq.ConfigurationError, match=r"at most 1000 calls .* got 1001"):
        await queue_obj.enqueue_many([(jobs.add, (i, 0)) for i in range(1001)], atomic=True)
    with pytest.raises(naq.ConfigurationError, match="at most 1000 calls"):
        await naq.enqueue_many(
            ((jobs.add, (i, 0)) for i in range(1500)),
            queue_name=queue,
            nats_url=nats_url,
            atomic=True,
        )
    assert await stored_counts(nats_url) == before


async def test_atomic_is_refused_with_depends_on_and_must_be_a_bool(
    nats_url: str, queue: str, queue_obj: naq.Queue
) -> None:
    first = await queue_obj.enqueue(jobs.add, 1, 1)
    before = await stored_counts(nats_url)
    with pytest.raises(naq.ConfigurationError, match="cannot be combined with depends_on"):
        await queue_obj.enqueue_many([(jobs.add, (1, 2))], atomic=True, depends_on=[first])
    with pytest.raises(naq.ConfigurationError, match="atomic must be True or False"):
        await queue_obj.enqueue_many([(jobs.add, (1, 2))], atomic="yes")  # type: ignore[arg-type]
    assert await stored_counts(nats_url) == before


async def test_an_oversized_job_refuses_the_whole_batch_before_anything_is_written(
    nats_url: str, queue: str, queue_obj: naq.Queue
) -> None:
    conn = await queue_obj.connection()
    before = await stored_counts(nats_url)
    big = "x" * conn.max_payload
    with pytest.raises(naq.SerializationError):
        await queue_obj.enqueue_many([(jobs.echo, ("small",)), (jobs.echo, (big,))], atomic=True)
    assert await stored_counts(nats_url) == before  # not even the batch record


async def test_the_transport_refuses_a_batch_it_cannot_send(nats_url: str) -> None:
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        with pytest.raises(naq.ConfigurationError, match="at least one message"):
            atomic.AtomicBatch(conn, [])
        with pytest.raises(naq.ConfigurationError, match="at most 1000 messages"):
            atomic.AtomicBatch(conn, [("naq.queue.x", b"", None)] * 1001)
        with pytest.raises(naq.ConfigurationError, match="batch id"):
            atomic.AtomicBatch(conn, [("naq.queue.x", b"", None)], batch_id="b" * 65)
        with pytest.raises(naq.ConfigurationError, match="invalid NATS subject"):
            atomic.AtomicBatch(conn, [("naq.queue.x y", b"", None)])
    finally:
        await conn.close()


# --------------------------------------------------------------------------- other surfaces


def test_the_sync_twin_and_client_enqueue_atomically(
    nats_url: str, queue: str, worker_thread: Any
) -> None:
    many = naq.enqueue_many_sync(
        [(jobs.add, (i, 10)) for i in range(3)], queue_name=queue, nats_url=nats_url, atomic=True
    )
    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        more = client.enqueue_many([(jobs.add, (i, 20)) for i in range(2)], atomic=True)
        with pytest.raises(naq.ConfigurationError, match="at most 1000 calls"):
            client.enqueue_many([(jobs.add, (1, 1))] * 1001, atomic=True)
        with worker_thread([queue], nats_url):
            results = [client.fetch_job_result(j.job_id, timeout=WAIT) for j in many + more]
    assert results == [10, 11, 12, 20, 21]


async def test_without_atomic_nothing_changes(nats_url: str, queue: str) -> None:
    """The default path is not a batch: plain pipelined publishes, as before."""
    async with naq.Queue(queue, nats_url=nats_url) as q:
        enqueued = await q.enqueue_many([(jobs.add, (i, i)) for i in range(3)])
        enqueued += await q.enqueue_many([(jobs.add, (i, i)) for i in range(2)], atomic=False)
        for job in enqueued:
            assert await q.get_job_status(job.job_id) == JobStatus.PENDING
    stored = await stored_jobs(nats_url, queue)
    assert [(msg.headers or {}).get("Nats-Msg-Id") for msg in stored] == [
        job.job_id for job in enqueued
    ]
    assert not any(atomic.HEADER_BATCH_ID in (msg.headers or {}) for msg in stored)
