"""Shared limits enforced by workers: concurrency per key (families), rates, queue limits,
slots of a killed worker coming back, changes applied to running workers (real server)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from tests.limit_jobs import fail_once, timed
from tests.limit_jobs import runs as read_runs

import naq
from naq import JobStatus

pytestmark = pytest.mark.asyncio


def _overlaps(runs: list[tuple[str, float, float, int]]) -> int:
    """How many pairs of runs overlapped in time."""
    ordered = sorted(runs, key=lambda r: r[1])
    return sum(1 for a, b in itertools.pairwise(ordered) if b[1] < a[2])


async def test_family_concurrency_one_per_key(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    await naq.set_limit("user:*", concurrency=1, nats_url=nats_url)
    async with naq.Queue(queue, nats_url) as q:
        jobs = [
            await q.enqueue(timed, str(log), key, 0.05, limits=[f"user:{key}"])
            for _ in range(8)
            for key in ("a", "b")
        ]
        async with running_worker([queue], nats_url, concurrency=8):
            for job in jobs:
                await job.result(timeout=30)
    runs = read_runs(log)
    assert len(runs) == 16
    for key in ("a", "b"):
        assert _overlaps([r for r in runs if r[0] == key]) == 0
    # the two keys ran alongside each other
    assert _overlaps(runs) > 0
    info = await naq.get_job_info(jobs[-1].job_id, nats_url=nats_url)
    assert len(info.attempts) == 1  # waiting counted no attempt


async def test_rate_limit_holds_across_workers(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    await naq.set_limit("api", rate="20/s", nats_url=nats_url)
    async with naq.Queue(queue, nats_url) as q:
        jobs = await q.enqueue_many(
            [(timed, (str(log), "api"), {}) for _ in range(60)], limits=["api"]
        )
        async with (
            running_worker([queue], nats_url, concurrency=10),
            running_worker([queue], nats_url, concurrency=10),
        ):
            for job in jobs:
                await job.result(timeout=30)
    starts = sorted(r[1] for r in read_runs(log))
    span = starts[-1] - starts[0]
    # 60 starts at 20/s: the first burst of 2, then one per 50 ms: about 2.9 s
    assert span >= 2.5, span
    assert span < 4.5, span


async def test_waiting_job_shows_its_limit_and_queue_limit_applies(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    await naq.set_limit(f"queue:{queue}", concurrency=1, nats_url=nats_url)
    async with naq.Queue(queue, nats_url) as q:
        long = await q.enqueue(timed, str(log), "long", 2.0)
        async with running_worker([queue], nats_url, concurrency=4):
            # the long job holds the queue's one slot before the short one asks for it
            deadline = time.monotonic() + 10
            while await q.get_job_status(long.job_id) != JobStatus.RUNNING:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            short = await q.enqueue(timed, str(log), "short")
            await asyncio.sleep(0.5)
            info = await q.get_job_info(short.job_id)
            assert info.status == JobStatus.PENDING
            assert info.waiting_for is not None and f"queue:{queue}" in info.waiting_for
            await short.result(timeout=10)
            await long.result(timeout=10)
    assert _overlaps(read_runs(log)) == 0


async def test_deleting_a_limit_frees_waiting_jobs(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    await naq.set_limit("slow", rate="1/m", nats_url=nats_url)
    async with (
        naq.Queue(queue, nats_url) as q,
        running_worker([queue], nats_url, concurrency=4),
    ):
        first = await q.enqueue(timed, str(log), "x", limits=["slow"])
        await first.result(timeout=10)
        second = await q.enqueue(timed, str(log), "x", limits=["slow"])
        await asyncio.sleep(0.5)
        assert await q.get_job_status(second.job_id) == JobStatus.PENDING
        started = time.monotonic()
        assert await naq.delete_limit("slow", nats_url=nats_url)
        await second.result(timeout=10)
        assert time.monotonic() - started < 1.5


async def test_bad_limit_names_are_refused_at_the_call(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        for bad in (["a b"], ["user:*"], [""], "x.y"):
            with pytest.raises(naq.ConfigurationError, match="limit"):
                await q.enqueue(timed, "/dev/null", "k", limits=bad, job_id="never-stored")
        with pytest.raises(naq.JobNotFoundError):
            await q.get_job_info("never-stored")
    with pytest.raises(naq.ConfigurationError):
        await naq.set_limit("api", rate="100/d", nats_url=nats_url)


async def test_waits_for_a_limit_do_not_use_up_retries(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    """A job that waited for a limit, then failed once, still gets its one retry."""
    await naq.set_limit("one", concurrency=1, nats_url=nats_url)
    flag = tmp_path / "failed-once"
    async with naq.Queue(queue, nats_url) as q:
        holder = await q.enqueue(timed, str(tmp_path / "log"), "h", 0.6, limits=["one"])
        flaky = await q.enqueue(
            fail_once, str(flag), limits=["one"], max_retries=1, retry_delay=0.05
        )
        async with running_worker([queue], nats_url, concurrency=4):
            await holder.result(timeout=10)
            assert await flaky.result(timeout=10) == "second time"
        info = await q.get_job_info(flaky.job_id)
        assert [a.attempt for a in info.attempts] == [1, 2]
