"""``cancel_job`` end to end: queued, deferred, scheduled and running jobs (real server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tests.dep_jobs import sleep_until_cancelled, spin_until_cancelled, step
from tests.helpers import eventually

import naq
from naq import JobStatus

pytestmark = pytest.mark.asyncio


async def _status(q: naq.Queue, job_id: str, want: JobStatus) -> bool:
    return await q.get_job_status(job_id) == want


async def test_queued_job_never_runs(nats_url: str, queue: str, running_worker: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        job = await q.enqueue(step, "never")
        assert await q.cancel_job(job.job_id) is True
        assert await q.get_job_status(job.job_id) == JobStatus.CANCELLED
        after = await q.enqueue(step, "after")
        async with running_worker([queue], nats_url, concurrency=2):
            assert await after.result(timeout=10) == "after"
        info = await q.get_job_info(job.job_id)
        assert info.status == JobStatus.CANCELLED and info.started_at is None
        with pytest.raises(naq.JobCancelledError):
            await q.fetch_job_result(job.job_id)


async def test_running_async_job_cancelled_quickly(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"
    async with naq.Queue(queue, nats_url) as q:
        async with running_worker([queue], nats_url, concurrency=2):
            job = await q.enqueue(sleep_until_cancelled, str(marker))
            await eventually(lambda: _status(q, job.job_id, JobStatus.RUNNING))
            asked = time.time()
            assert await q.cancel_job(job.job_id) is True
            await eventually(lambda: _status(q, job.job_id, JobStatus.CANCELLED))
            assert float(marker.read_text()) - asked < 0.1
        with pytest.raises(naq.JobCancelledError):
            await q.fetch_job_result(job.job_id)


async def test_running_sync_job_sees_cancelled(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with (
        naq.Queue(queue, nats_url) as q,
        running_worker([queue], nats_url, concurrency=2),
    ):
        job = await q.enqueue(spin_until_cancelled)
        await eventually(lambda: _status(q, job.job_id, JobStatus.RUNNING))
        assert await q.cancel_job(job.job_id) is True
        await eventually(lambda: _status(q, job.job_id, JobStatus.CANCELLED))


async def test_deferred_and_scheduled_jobs_never_run(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        parent = await q.enqueue(step, "p", 0.3)
        deferred = await q.enqueue(step, "d", depends_on=parent)
        downstream = await q.enqueue(step, "x", depends_on=deferred)
        later = await q.enqueue_in(0.5, step, "s")
        assert await q.cancel_job(deferred.job_id) is True
        assert await q.cancel_job(later.job_id) is True
        async with running_worker([queue], nats_url, concurrency=2):
            assert await parent.result(timeout=10) == "p"
            await asyncio.sleep(1.0)
        for job in (deferred, downstream, later):
            info = await q.get_job_info(job.job_id)
            assert info.status == JobStatus.CANCELLED and info.started_at is None


async def test_finished_job_is_left_alone(nats_url: str, queue: str, running_worker: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        async with running_worker([queue], nats_url, concurrency=2):
            job = await q.enqueue(step, "done")
            assert await job.result(timeout=10) == "done"
        assert await q.cancel_job(job.job_id) is False
        assert await q.fetch_job_result(job.job_id) == "done"
        with pytest.raises(naq.JobNotFoundError):
            await q.cancel_job("no-such-job")


async def test_fired_one_off_without_a_worker_is_cancelled(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        job = await q.enqueue_in(0.05, step, "late")
        await asyncio.sleep(1.0)  # fired: its message waits in the queue, its record says so
        assert await q.get_job_status(job.job_id) == JobStatus.SCHEDULED
        started = time.monotonic()
        assert await q.cancel_job(job.job_id) is True
        assert time.monotonic() - started < 2
        async with running_worker([queue], nats_url, concurrency=2):
            after = await q.enqueue(step, "after")
            assert await after.result(timeout=10) == "after"
        info = await q.get_job_info(job.job_id)
        assert info.status == JobStatus.CANCELLED and info.started_at is None


async def test_cancel_while_a_dependant_is_being_prepared(
    nats_url: str, queue: str, running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that arrives after the worker's check but before the function starts (it
    reads the results of the job's dependencies meanwhile) still stops the run."""
    from naq.dependencies import Dependencies

    reading, go_on = asyncio.Event(), asyncio.Event()
    real = Dependencies.results_of

    async def slow_results_of(self: Dependencies, job_ids: Any) -> dict[str, Any]:
        reading.set()
        await go_on.wait()
        return await real(self, job_ids)

    monkeypatch.setattr(Dependencies, "results_of", slow_results_of)
    async with naq.Queue(queue, nats_url) as q:
        async with running_worker([queue], nats_url, concurrency=2):
            parent = await q.enqueue(step, "p")
            child = await q.enqueue(spin_until_cancelled, 5.0, depends_on=parent)
            await asyncio.wait_for(reading.wait(), 10)
            assert await q.cancel_job(child.job_id) is True
            await asyncio.sleep(0.3)  # the request reaches the worker
            go_on.set()
            await eventually(lambda: _status(q, child.job_id, JobStatus.CANCELLED))
            await asyncio.sleep(0.5)
        info = await q.get_job_info(child.job_id)
        assert info.status == JobStatus.CANCELLED
