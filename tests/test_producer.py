"""Producer side against a real nats-server: enqueueing, results, status, ids, purge."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from tests import jobs

import naq
from conftest import WAIT, stream_count
from naq import JobStatus


def assert_identical(got: Any, expected: Any, where: str = "value") -> None:
    """Equal *and* of exactly the same types all the way down (1 == 1.0 == True not enough)."""
    assert type(got) is type(expected), f"{where}: {type(got).__name__} != {type(expected)}"
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for key in expected:
            assert_identical(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_identical(g, e, f"{where}[{index}]")
    elif isinstance(expected, set | frozenset):
        assert got == expected, where
        for item in expected:  # members of equal sets: compare each with its twin
            twin = next(g for g in got if g == item)
            assert_identical(twin, item, f"{where}{{{item!r}}}")
    elif isinstance(expected, datetime | time):
        assert got == expected, where
        assert got.tzinfo == expected.tzinfo, f"{where}: tzinfo {got.tzinfo!r}"
        assert got.fold == expected.fold, f"{where}: fold"
        assert got.isoformat() == expected.isoformat(), where
    elif isinstance(expected, date):
        assert got == expected, where
    else:
        assert got == expected, where
        assert str(got) == str(expected), f"{where}: {got!s} != {expected!s}"  # Decimal('1.10')


# --------------------------------------------------------------------------- enqueue


async def test_enqueue_returns_job_with_id_function_and_args(nats_url: str, queue: str) -> None:
    job = await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)

    assert isinstance(job, naq.Job)
    assert isinstance(job.job_id, str) and job.job_id
    assert job.function == "tests.jobs:add"
    assert job.args == (1, 2)
    assert job.kwargs == {}
    assert job.queue_name == queue
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.PENDING
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 1


async def test_enqueue_gives_every_job_a_new_id(nats_url: str, queue: str) -> None:
    ids = {
        (await naq.enqueue(jobs.add, i, i, queue_name=queue, nats_url=nats_url)).job_id
        for i in range(20)
    }
    assert len(ids) == 20


async def test_job_options_never_reach_the_function(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(
        jobs.echo_kwargs,
        queue_name=queue,
        nats_url=nats_url,
        max_retries=0,
        timeout=5,
        retry_delay=1,
        retry_strategy="exponential",
        result_ttl=600,
        color="red",
    )
    assert job.kwargs == {"color": "red"}
    assert job.timeout == 5
    assert job.max_retries == 0
    assert job.result_ttl == 600

    async with running_worker([queue], nats_url):
        assert await job.result(timeout=WAIT) == {"color": "red"}


async def test_enqueue_many_500_calls_all_complete_with_correct_results(
    nats_url: str, queue: str, burst: Any
) -> None:
    calls = [
        (jobs.add if i % 2 else jobs.async_add, (i, 1000), {}) if i % 3 else (jobs.add, (i, i))
        for i in range(500)
    ]
    enqueued = await naq.enqueue_many(calls, queue_name=queue, nats_url=nats_url)

    assert len(enqueued) == 500
    assert len({job.job_id for job in enqueued}) == 500
    assert all(job.queue_name == queue for job in enqueued)
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 500

    await burst([queue], nats_url, concurrency=8)

    results = await asyncio.gather(
        *(naq.fetch_job_result(job.job_id, nats_url=nats_url) for job in enqueued)
    )
    expected = [i + 1000 if i % 3 else 2 * i for i in range(500)]
    assert results == expected


async def test_enqueue_many_of_nothing_returns_empty_list(nats_url: str, queue: str) -> None:
    assert await naq.enqueue_many([], queue_name=queue, nats_url=nats_url) == []


async def test_queue_as_async_context_manager(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url=nats_url) as q:
        assert q.name == queue
        conn = await q.connection()
        assert conn.is_connected
        job = await q.enqueue(jobs.add, 20, 22)
        assert job.queue_name == queue
        async with running_worker([queue], nats_url):
            assert await q.fetch_job_result(job.job_id, timeout=WAIT) == 42
            assert await job.result(timeout=WAIT) == 42
        assert await q.get_job_status(job.job_id) == JobStatus.COMPLETED
    assert conn.closed


# --------------------------------------------------------------------------- results


async def test_fetch_result_of_unfinished_job_without_timeout_is_not_found(
    nats_url: str, queue: str
) -> None:
    job = await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    with pytest.raises(naq.JobNotFoundError, match="not finished"):
        await naq.fetch_job_result(job.job_id, nats_url=nats_url)


async def test_fetch_result_of_unfinished_job_times_out_as_not_found(
    nats_url: str, queue: str
) -> None:
    job = await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    with pytest.raises(naq.JobNotFoundError):
        await naq.fetch_job_result(job.job_id, timeout=0.3, nats_url=nats_url)


@pytest.mark.parametrize("timeout", [None, 0.3])
async def test_fetch_result_of_unknown_id_is_not_found(
    nats_url: str, timeout: float | None
) -> None:
    with pytest.raises(naq.JobNotFoundError):
        await naq.fetch_job_result(uuid.uuid4().hex, timeout=timeout, nats_url=nats_url)
    with pytest.raises(naq.JobNotFoundError):
        await naq.fetch_job_result("not.a valid id", timeout=timeout, nats_url=nats_url)


async def test_lookups_of_unknown_id_are_not_found(nats_url: str) -> None:
    unknown = uuid.uuid4().hex
    with pytest.raises(naq.JobNotFoundError):
        await naq.get_job_status(unknown, nats_url=nats_url)
    with pytest.raises(naq.JobNotFoundError):
        await naq.get_job_info(unknown, nats_url=nats_url)


async def test_fetch_result_with_timeout_waits_for_a_worker_started_later(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.add, 40, 2, queue_name=queue, nats_url=nats_url)
    waiter = asyncio.create_task(naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url))
    await asyncio.sleep(0.3)
    assert not waiter.done(), "fetch_job_result(timeout=...) returned before the job ran"

    async with running_worker([queue], nats_url):
        assert await asyncio.wait_for(waiter, WAIT) == 42


async def test_failed_job_raises_job_execution_error_naming_the_exception(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.fail, "kaboom 42", queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        with pytest.raises(naq.JobExecutionError) as info:
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    message = str(info.value)
    assert "ValueError" in message
    assert "kaboom 42" in message
    assert info.value.error_type is not None and info.value.error_type.endswith("ValueError")
    assert info.value.remote_traceback is not None
    assert "kaboom 42" in info.value.remote_traceback
    # asking again gives the same answer (the failure is stored, not consumed)
    with pytest.raises(naq.JobExecutionError, match="kaboom 42"):
        await naq.fetch_job_result(job.job_id, nats_url=nats_url)
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.FAILED


async def test_results_round_trip_with_exact_types(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    value = jobs.make_rich()
    echoed = await naq.enqueue(jobs.echo, value, queue_name=queue, nats_url=nats_url)
    produced = await naq.enqueue(jobs.rich_result, queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        got_echo = await echoed.result(timeout=WAIT)
        got_result = await produced.result(timeout=WAIT)

    assert_identical(got_echo, value)
    assert_identical(got_result, jobs.make_rich())


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -1, 2**64 - 1, 1.5, "", "text", [], {}, [1, [2, [3]]], {"a": {"b": None}}],
    ids=repr,
)
async def test_json_native_results_come_back_unchanged(
    nats_url: str, queue: str, burst: Any, value: Any
) -> None:
    job = await naq.enqueue(jobs.echo, value, queue_name=queue, nats_url=nats_url)
    await burst([queue], nats_url)
    assert_identical(await naq.fetch_job_result(job.job_id, nats_url=nats_url), value)


async def test_unserializable_result_fails_the_job_with_serialization_error(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.unserializable_result, queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        with pytest.raises(naq.JobExecutionError) as info:
            await job.result(timeout=WAIT)

    assert "SerializationError" in str(info.value)
    assert "Opaque" in str(info.value)
    job_info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert job_info.status == JobStatus.FAILED
    assert job_info.error_type is not None and "SerializationError" in job_info.error_type


# --------------------------------------------------------------------------- status and info


async def test_job_status_and_info_of_completed_job(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.add, 2, 3, queue_name=queue, nats_url=nats_url)

    pending = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert pending.status == JobStatus.PENDING
    assert pending.attempts == []
    assert pending.worker_id is None
    assert pending.started_at is None and pending.finished_at is None
    assert pending.enqueued_at is not None

    async with running_worker([queue], nats_url) as worker:
        assert await job.result(timeout=WAIT) == 5

    status = await naq.get_job_status(job.job_id, nats_url=nats_url)
    assert status == JobStatus.COMPLETED
    assert status == "completed"  # a str enum

    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.job_id == job.job_id
    assert info.status == JobStatus.COMPLETED
    assert info.queue_name == queue
    assert info.function == "tests.jobs:add"
    assert info.worker_id == worker.worker_id
    assert len(info.attempts) == 1
    attempt = info.attempts[0]
    assert attempt.attempt == 1
    assert attempt.worker_id == worker.worker_id
    assert attempt.error is None and attempt.error_type is None
    assert info.enqueued_at is not None
    assert info.started_at is not None
    assert info.finished_at is not None
    assert info.enqueued_at <= info.started_at <= info.finished_at
    assert attempt.started_at == info.started_at
    assert attempt.finished_at == info.finished_at
    assert info.depends_on == []
    assert info.schedule_id is None


async def test_job_info_lists_every_failed_attempt(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(
        jobs.fail, "always", queue_name=queue, nats_url=nats_url, max_retries=1, retry_delay=0
    )
    async with running_worker([queue], nats_url):
        with pytest.raises(naq.JobExecutionError, match="always"):
            await job.result(timeout=WAIT)

    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.status == JobStatus.FAILED
    assert [a.attempt for a in info.attempts] == [1, 2]
    for attempt in info.attempts:
        assert attempt.error == "always"
        assert attempt.error_type is not None and attempt.error_type.endswith("ValueError")
        assert attempt.started_at is not None and attempt.finished_at is not None
    assert info.attempts[0].finished_at <= info.attempts[1].started_at  # type: ignore[operator]


# --------------------------------------------------------------------------- custom ids


async def test_custom_job_id_enqueued_twice_runs_once(
    nats_url: str, queue: str, burst: Any, tmp_path: Path
) -> None:
    counter = tmp_path / "calls.txt"
    custom = f"order-{uuid.uuid4().hex}"

    first = await naq.enqueue(
        jobs.count_call, str(counter), job_id=custom, queue_name=queue, nats_url=nats_url
    )
    second = await naq.enqueue(
        jobs.count_call, str(counter), job_id=custom, queue_name=queue, nats_url=nats_url
    )
    assert first.job_id == second.job_id == custom
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 1

    await burst([queue], nats_url)
    assert counter.read_text().splitlines() == ["ran"]
    assert await naq.fetch_job_result(custom, nats_url=nats_url) == 1

    # once finished, the same id is still known: nothing new runs
    third = await naq.enqueue(
        jobs.count_call, str(counter), job_id=custom, queue_name=queue, nats_url=nats_url
    )
    assert third.job_id == custom
    await burst([queue], nats_url)
    assert counter.read_text().splitlines() == ["ran"]


# --------------------------------------------------------------------------- purge


async def test_purge_queue_removes_waiting_jobs_which_never_run(
    nats_url: str, queue: str, burst: Any, tmp_path: Path
) -> None:
    markers = [tmp_path / f"job-{i}" for i in range(7)]
    enqueued = [
        await naq.enqueue(jobs.touch, str(m), queue_name=queue, nats_url=nats_url) for m in markers
    ]
    other = f"{queue}-other"
    kept = await naq.enqueue(jobs.add, 1, 1, queue_name=other, nats_url=nats_url)

    assert await naq.purge_queue(queue, nats_url=nats_url) == 7
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 0
    assert await naq.purge_queue(queue, nats_url=nats_url) == 0

    await burst([queue], nats_url)
    assert not any(m.exists() for m in markers)
    for job in enqueued:
        # purged jobs never started: their records say they were cancelled by the purge
        info = await naq.get_job_info(job.job_id, nats_url=nats_url)
        assert info.status == JobStatus.CANCELLED
        assert info.error_type == "naq:purged"
        assert info.attempts == []

    # other queues are untouched
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{other}") == 1
    await burst([other], nats_url)
    assert await naq.fetch_job_result(kept.job_id, nats_url=nats_url) == 2


async def test_purge_of_unknown_queue_removes_nothing(nats_url: str, queue: str) -> None:
    assert await naq.purge_queue(f"{queue}-never-used", nats_url=nats_url) == 0


async def test_enqueue_on_fresh_connection_never_overwrites_the_outcome(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    # Regression test: the 'pending' record of a producer's first enqueue (written while the
    # job is published) once landed after a fast worker's outcome and replaced it. The race
    # hit 1 in 5 to 1 in 40 fresh connections, so try many (about 10 ms each).
    async with running_worker([queue], nats_url, concurrency=4) as worker:
        for attempt in range(150):
            async with naq.Queue(queue, nats_url=nats_url) as q:  # a fresh connection
                job = await q.enqueue(jobs.add, attempt, 1)
                # enqueue returned: its own record write is stored. Wait for the worker's.
                deadline = asyncio.get_running_loop().time() + WAIT
                while worker.jobs_done <= attempt:
                    assert asyncio.get_running_loop().time() < deadline, "job never ran"
                    await asyncio.sleep(0.005)
                status = await q.get_job_status(job.job_id)
                assert status == JobStatus.COMPLETED, f"attempt {attempt}: status {status}"


async def test_a_closed_queue_does_not_reopen_a_connection_nobody_closes(nats_url: str) -> None:
    async with naq.Queue(nats_url=nats_url) as q:
        job = await q.enqueue(jobs.add, 1, 2)
    with pytest.raises(naq.ConfigurationError, match="was closed"):
        await job.result(timeout=1)
    with pytest.raises(naq.ConfigurationError, match="was closed"):
        await q.enqueue(jobs.add, 1, 2)


async def test_job_info_keeps_the_call_of_a_small_job(nats_url: str, running_worker: Any) -> None:
    """A job's arguments are in its record (``JobInfo.args``/``kwargs``, as the function got
    them) when its message is at most 4 KB; a bigger call is not copied into the record."""
    queue = f"call-{uuid.uuid4().hex[:8]}"
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with naq.Queue(queue, nats_url=nats_url) as q:
        small = await q.enqueue(jobs.echo_kwargs, at=when, name="x")
        big = await q.enqueue(jobs.echo, "y" * 5000)
        pending = await q.get_job_info(small.job_id)
        assert (pending.args, pending.kwargs) == ([], {"at": when, "name": "x"})
        async with running_worker([queue], nats_url):
            await small.result(timeout=10)
            await big.result(timeout=10)
        done = await q.get_job_info(small.job_id)
        assert (done.args, done.kwargs) == ([], {"at": when, "name": "x"})
        assert (await q.get_job_info(big.job_id)).args is None
