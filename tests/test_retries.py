"""Retries, retry timing, retry filters, timeouts and the running job's context, against a
real nats-server with in-process workers (job functions in ``tests/retry_jobs.py``)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests import retry_jobs as rj
from tests.helpers import WAIT, eventually
from tests.helpers import queue_worker as worker

import naq
from naq import JobExecutionError, JobStatus, JobTimeoutError

T = TypeVar("T")


def new_queue(tag: str) -> str:
    return f"retry-{tag}-{uuid.uuid4().hex[:10]}"


def times(path: Path) -> list[float]:
    return [float(line) for line in rj.lines(path)]


# ------------------------------------------------------------------------ retry counts


async def test_always_failing_job_runs_max_retries_plus_one_then_fails(
    nats_url: str, tmp_path: Path
) -> None:
    q = new_queue("always")
    runs = tmp_path / "runs"
    job = await naq.enqueue(
        rj.always_fail, str(runs), "boom 42", max_retries=2, queue_name=q, nats_url=nats_url
    )
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError) as raised:
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
        dead = await eventually(lambda: naq.list_dead_letters(q, nats_url=nats_url))

    assert type(raised.value) is JobExecutionError
    assert "ValueError" in str(raised.value)
    assert "boom 42" in str(raised.value)
    assert len(rj.lines(runs)) == 3
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.FAILED
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.status == JobStatus.FAILED
    assert [a.attempt for a in info.attempts] == [1, 2, 3]
    for attempt in info.attempts:
        assert attempt.error_type is not None and "ValueError" in attempt.error_type
        assert attempt.error is not None and "boom 42" in attempt.error
    assert len(dead) == 1
    assert dead[0].kind == "failed"
    assert dead[0].job_id == job.job_id
    assert dead[0].queue == q
    assert "ValueError" in dead[0].reason
    await naq.close()


async def test_job_failing_twice_then_succeeding_completes(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("twice")
    runs = tmp_path / "runs"
    job = await naq.enqueue(
        rj.fail_then_succeed,
        str(runs),
        2,
        {"answer": 42},
        max_retries=3,
        queue_name=q,
        nats_url=nats_url,
    )
    async with worker(q, nats_url):
        result = await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    assert result == {"answer": 42}
    assert len(rj.lines(runs)) == 3
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.status == JobStatus.COMPLETED
    assert len(info.attempts) >= 3
    for attempt in info.attempts[:2]:
        assert attempt.error_type is not None and "ValueError" in attempt.error_type
        assert attempt.error is not None and "failure" in attempt.error
    assert info.attempts[-1].error is None
    assert await naq.list_dead_letters(q, nats_url=nats_url) == []
    await naq.close()


# ------------------------------------------------------------------------ retry timing


@pytest.mark.parametrize(
    ("options", "expected_gaps"),
    [
        ({"retry_delay": [0.3, 0.6]}, [0.3, 0.6]),
        ({"retry_delay": 0.2, "retry_strategy": "exponential"}, [0.2, 0.4]),
    ],
    ids=["list", "exponential"],
)
async def test_retry_delays_are_respected(
    nats_url: str, tmp_path: Path, options: dict[str, Any], expected_gaps: list[float]
) -> None:
    q = new_queue("delay")
    runs = tmp_path / "times"
    job = await naq.enqueue(
        rj.timed_fail, str(runs), max_retries=2, queue_name=q, nats_url=nats_url, **options
    )
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    stamps = times(runs)
    assert len(stamps) == 3
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    for gap, expected in zip(gaps, expected_gaps, strict=True):
        assert expected <= gap < expected + 3.0, f"gaps {gaps}, expected at least {expected_gaps}"
    await naq.close()


async def test_status_is_retrying_while_waiting_for_the_retry_delay(
    nats_url: str, tmp_path: Path
) -> None:
    q = new_queue("retrying")
    runs = tmp_path / "times"
    job = await naq.enqueue(
        rj.timed_fail, str(runs), max_retries=1, retry_delay=2.0, queue_name=q, nats_url=nats_url
    )

    async def retrying() -> bool:
        status = await naq.get_job_status(job.job_id, nats_url=nats_url)
        return status == JobStatus.RETRYING

    async with worker(q, nats_url):
        await eventually(retrying, timeout=5)
        assert len(times(runs)) == 1
        info = await naq.get_job_info(job.job_id, nats_url=nats_url)
        assert info.status == JobStatus.RETRYING
        assert len(info.attempts) == 1
        assert info.attempts[0].error_type is not None
        assert "ValueError" in info.attempts[0].error_type
        # still waiting a moment later: the delay is 2 s
        await asyncio.sleep(0.5)
        assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.RETRYING
        assert len(times(runs)) == 1
        with pytest.raises(JobExecutionError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    stamps = times(runs)
    assert len(stamps) == 2
    assert stamps[1] - stamps[0] >= 2.0
    await naq.close()


# ------------------------------------------------------------------------ retry filters


async def test_ignore_on_fails_at_once(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("ignore")
    runs = tmp_path / "runs"
    job = await naq.enqueue(
        rj.raise_named,
        str(runs),
        "value",
        max_retries=3,
        ignore_on=(ValueError,),
        queue_name=q,
        nats_url=nats_url,
    )
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError, match="ValueError"):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    assert rj.lines(runs) == ["value"]
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.status == JobStatus.FAILED
    assert len(info.attempts) == 1
    await naq.close()


async def test_retry_on_retries_only_matching_exceptions(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("retryon")
    value_runs, key_runs = tmp_path / "value", tmp_path / "key"
    common: dict[str, Any] = {"max_retries": 2, "retry_on": (KeyError,), "queue_name": q}
    not_matching = await naq.enqueue(
        rj.raise_named, str(value_runs), "value", nats_url=nats_url, **common
    )
    matching = await naq.enqueue(rj.raise_named, str(key_runs), "key", nats_url=nats_url, **common)
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError, match="ValueError"):
            await naq.fetch_job_result(not_matching.job_id, timeout=WAIT, nats_url=nats_url)
        with pytest.raises(JobExecutionError, match="KeyError"):
            await naq.fetch_job_result(matching.job_id, timeout=WAIT, nats_url=nats_url)

    assert rj.lines(value_runs) == ["value"]
    assert rj.lines(key_runs) == ["key", "key", "key"]
    assert len((await naq.get_job_info(matching.job_id, nats_url=nats_url)).attempts) == 3
    await naq.close()


# ------------------------------------------------------------------------ timeouts


async def test_async_job_past_its_timeout_fails_with_job_timeout_error(
    nats_url: str, tmp_path: Path
) -> None:
    q = new_queue("atimeout")
    runs = tmp_path / "runs"
    job = await naq.enqueue(
        rj.sleep_async, str(runs), 5.0, timeout=0.3, queue_name=q, nats_url=nats_url
    )
    async with worker(q, nats_url):
        started = time.monotonic()
        with pytest.raises(JobTimeoutError) as raised:
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
        elapsed = time.monotonic() - started

    assert isinstance(raised.value, JobExecutionError)
    assert elapsed < 3.0, f"timeout reported after {elapsed:.1f} s"
    assert rj.lines(runs) == ["start"]  # cancelled, never reached its end
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.FAILED
    await naq.close()


async def test_sync_job_timeout_is_reported_early_but_keeps_its_slot(
    nats_url: str, tmp_path: Path
) -> None:
    q = new_queue("stimeout")
    slow_log, next_log = tmp_path / "slow", tmp_path / "next"
    slow = await naq.enqueue(
        rj.sleep_sync, str(slow_log), 2.0, timeout=0.3, queue_name=q, nats_url=nats_url
    )
    async with worker(q, nats_url, concurrency=1):
        # the slow job must have started before the next one is enqueued
        await eventually(lambda: _async(rj.lines(slow_log)), timeout=5)
        following = await naq.enqueue(rj.mark_start, str(next_log), queue_name=q, nats_url=nats_url)
        with pytest.raises(JobTimeoutError):
            await naq.fetch_job_result(slow.job_id, timeout=WAIT, nats_url=nats_url)
        reported_at = time.time()
        thread_still_running = not any(line.startswith("end") for line in rj.lines(slow_log))
        next_started = await naq.fetch_job_result(following.job_id, timeout=WAIT, nats_url=nats_url)

    slow_lines = rj.lines(slow_log)
    slow_start = float(slow_lines[0].split()[1])
    slow_end = float(slow_lines[1].split()[1])
    assert thread_still_running, "timeout was only reported once the thread had returned"
    assert reported_at < slow_end
    assert reported_at - slow_start < 1.5
    assert next_started >= slow_end, (
        f"the next job started {slow_end - next_started:.2f} s before the timed-out thread "
        "returned: its slot was given back too early"
    )
    await naq.close()


async def _async(value: T) -> T:
    return value


async def test_timed_out_job_is_retried(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("tretry")
    runs = tmp_path / "runs"
    job = await naq.enqueue(
        rj.sleep_async, str(runs), 5.0, timeout=0.3, max_retries=1, queue_name=q, nats_url=nats_url
    )
    async with worker(q, nats_url):
        with pytest.raises(JobTimeoutError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    assert rj.lines(runs) == ["start", "start"]
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert len(info.attempts) == 2
    for attempt in info.attempts:
        assert attempt.error_type is not None and "JobTimeoutError" in attempt.error_type
    await naq.close()


# ------------------------------------------------------------------------ options and context


async def test_job_options_never_reach_the_function(nats_url: str) -> None:
    q = new_queue("options")
    job = await naq.enqueue(
        rj.echo_kwargs,
        1,
        real="kwarg",
        max_retries=2,
        retry_delay=0.1,
        retry_strategy="exponential",
        timeout=5,
        result_ttl=60,
        queue_name=q,
        nats_url=nats_url,
    )
    async with worker(q, nats_url):
        result = await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    assert result == {"args": [1], "kwargs": {"real": "kwarg"}}
    await naq.close()


async def test_current_job_attempt_counts_retries(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("attempt")
    runs = tmp_path / "attempts"
    job = await naq.enqueue(
        rj.attempt_number, str(runs), max_retries=1, queue_name=q, nats_url=nats_url
    )
    async with worker(q, nats_url):
        result = await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    assert result == 2
    assert rj.lines(runs) == ["1", "2"]
    await naq.close()


@pytest.mark.parametrize("func", [rj.progress_sync, rj.progress_async], ids=["sync", "async"])
async def test_set_progress_is_visible_while_the_job_runs(
    nats_url: str, tmp_path: Path, func: Any
) -> None:
    q = new_queue("progress")
    flag = tmp_path / "flag"
    job = await naq.enqueue(func, str(flag), queue_name=q, nats_url=nats_url)

    async def progressed() -> bool:
        info = await naq.get_job_info(job.job_id, nats_url=nats_url)
        return info.progress == 0.5 and info.progress_message == "half"

    async with worker(q, nats_url):
        try:
            await eventually(progressed, timeout=3)
            info = await naq.get_job_info(job.job_id, nats_url=nats_url)
            assert info.status == JobStatus.RUNNING
        finally:
            flag.touch()
        result = await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    assert result.endswith("done")
    await naq.close()


async def test_progress_reported_once_at_the_start_is_kept(nats_url: str, tmp_path: Path) -> None:
    for n in range(6):  # each fresh worker's first job is the one most likely to lose it
        q = new_queue(f"once{n}")
        flag = tmp_path / f"flag{n}"
        job = await naq.enqueue(rj.progress_once_async, str(flag), queue_name=q, nats_url=nats_url)

        async def progressed(job_id: str = job.job_id) -> bool:
            info = await naq.get_job_info(job_id, nats_url=nats_url)
            return info.progress == 0.25 and info.progress_message == "starting"

        async with worker(q, nats_url):
            try:
                await eventually(progressed, timeout=1.0)
            finally:
                flag.touch()
            assert await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url) == (
                "once done"
            )
    await naq.close()
