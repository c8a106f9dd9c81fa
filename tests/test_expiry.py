"""Job expiry (``expires=``) end to end against a real server and real workers: a job not
started by its expiry never runs, is ``cancelled`` with the reason "expired", and waiting for
it ends at once."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tests import sched_jobs
from tests.cli_run import CliResult, naq_cli, table_row
from tests.dep_jobs import step
from tests.helpers import eventually, running_scheduler
from tests.jobs import touch
from tests.retry_jobs import always_fail, lines
from tests.worker_procs import WorkerProcesses

import naq
from naq import JobStatus
from naq.expiry import EXPIRED
from naq.models import JobRecord
from naq.results import ResultStore
from naq.scheduling.models import ScheduleRecord
from naq.scheduling.runs import run_job_id
from naq.scheduling.store import ScheduleStore

pytestmark = pytest.mark.asyncio


async def stored(q: naq.Queue, job_id: str) -> JobRecord | None:
    """The record as stored (not as readers are shown it)."""
    return await ResultStore(await q.connection()).get(job_id)


async def stored_expired(q: naq.Queue, job_id: str) -> JobRecord:
    """Wait until the stored record of ``job_id`` says it was cancelled as expired."""

    async def check() -> JobRecord | None:
        record = await stored(q, job_id)
        if record is not None and record.error_type == EXPIRED:
            return record
        return None

    record = await eventually(check)
    assert record.status == JobStatus.CANCELLED.value
    assert record.error is not None and record.error.startswith("expired")
    return record


async def assert_reads_expired(q: naq.Queue, job_id: str) -> None:
    """Status, info and result all say cancelled because it expired."""
    info = await q.get_job_info(job_id)
    assert info.status == JobStatus.CANCELLED
    assert info.error_type == EXPIRED
    assert info.error is not None and "expired" in info.error
    assert info.started_at is None
    assert await q.get_job_status(job_id) == JobStatus.CANCELLED
    with pytest.raises(naq.JobCancelledError, match="expired"):
        await q.fetch_job_result(job_id)
    with pytest.raises(naq.JobCancelledError, match="expired"):
        await q.fetch_job_result(job_id, timeout=10)


async def test_expired_job_never_runs_on_a_worker_process(
    nats_url: str, queue: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    async with naq.Queue(queue, nats_url) as q:
        job = await q.enqueue(touch, str(marker), expires=0.2)
        assert await q.get_job_status(job.job_id) == JobStatus.PENDING
        await asyncio.sleep(0.5)
        proc = workers.start(queue, nats_url, "-c", "2")
        after = await q.enqueue(step, "after")
        assert await after.result(timeout=30) == "after", workers.all_logs()
        record = await stored_expired(q, job.job_id)  # stored by the worker, message acked
        assert not record.attempts
        await assert_reads_expired(q, job.job_id)
        assert not marker.exists()
        assert f"job {job.job_id} was not started in time" in workers.log(proc)


async def test_waiting_for_an_expiring_job_ends_at_its_expiry(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        job = await q.enqueue(step, "never", expires=0.5)  # no worker at all
        began = time.monotonic()
        with pytest.raises(naq.JobCancelledError, match="expired"):
            await job.result(timeout=10)
        waited = time.monotonic() - began
        assert 0.3 < waited < 2.0, waited
        await assert_reads_expired(q, job.job_id)
        # nothing was written: it is shown expired, the worker that sees it records it
        record = await stored(q, job.job_id)
        assert record is not None and record.status == JobStatus.PENDING.value


async def test_every_form_of_expires(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    later = datetime.now(timezone(timedelta(hours=-5))) + timedelta(minutes=10)
    async with naq.Queue(queue, nats_url) as q:
        expiring = {
            "seconds": await q.enqueue(touch, str(tmp_path / "s"), expires=0.2),
            "timedelta": await q.enqueue(
                touch, str(tmp_path / "t"), expires=timedelta(milliseconds=200)
            ),
            "datetime": await q.enqueue(
                touch, str(tmp_path / "d"), expires=datetime.now(UTC) + timedelta(seconds=0.2)
            ),
        }
        lasting = {
            "seconds": await q.enqueue(step, "s", expires=600),
            "timedelta": await q.enqueue(step, "t", expires=timedelta(minutes=10)),
            "datetime": await q.enqueue(step, "d", expires=later),
        }
        info = await q.get_job_info(lasting["datetime"].job_id)
        assert info.expires_at is not None and info.expires_at.tzinfo is not None
        assert abs((info.expires_at - later).total_seconds()) < 0.01
        assert (await q.get_job_info(lasting["seconds"].job_id)).expires_at is not None
        assert (await q.get_job_info((await q.enqueue(step, "x")).job_id)).expires_at is None
        await asyncio.sleep(0.5)
        async with running_worker([queue], nats_url, concurrency=4):
            for name, job in lasting.items():
                assert await job.result(timeout=10) == name[0]
            for job in expiring.values():
                await stored_expired(q, job.job_id)
                await assert_reads_expired(q, job.job_id)
        assert not any((tmp_path / name).exists() for name in "std")


async def test_naive_datetime_is_refused_and_nothing_stored(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        naive = datetime.now() + timedelta(minutes=1)  # naive: the point of the test
        with pytest.raises(naq.ConfigurationError, match="expires must be an aware datetime"):
            await q.enqueue(step, "x", job_id="naive-expiry", expires=naive)
        with pytest.raises(naq.ConfigurationError, match="expires"):
            await q.enqueue_in(1.0, step, "x", job_id="naive-expiry", expires=naive)
        with pytest.raises(naq.JobNotFoundError):
            await q.get_job_info("naive-expiry")


async def test_running_job_is_not_stopped_by_its_expiry(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q, running_worker([queue], nats_url, concurrency=2):
        job = await q.enqueue(step, "done", 1.2, expires=0.4)
        assert await job.result(timeout=10) == "done"
        info = await q.get_job_info(job.job_id)
        assert info.status == JobStatus.COMPLETED and info.error is None


async def test_retry_after_expiry_is_not_started(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with naq.Queue(queue, nats_url) as q, running_worker([queue], nats_url, concurrency=2):
        job = await q.enqueue(
            always_fail, str(runs), "no", max_retries=3, retry_delay=1.0, expires=0.5
        )
        with pytest.raises(naq.JobCancelledError, match="expired"):
            await job.result(timeout=10)  # ends at its expiry, not at the retry
        record = await stored_expired(q, job.job_id)  # the retry's delivery was acked unrun
        assert [a.attempt for a in record.attempts] == [1]
        await asyncio.sleep(0.3)
    assert lines(runs) == ["run"]


async def test_deferred_job_released_after_its_expiry_is_cancelled(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    other = f"{queue}-children"  # nobody consumes it until the end: the release decides
    async with naq.Queue(queue, nats_url) as q, naq.Queue(other, nats_url) as children:
        async with running_worker([queue], nats_url, concurrency=2):
            parent = await q.enqueue(step, "p", 0.8)
            child = await children.enqueue(touch, str(marker), depends_on=parent, expires=0.3)
            grandchild = await children.enqueue(step, "g", depends_on=child)
            assert await parent.result(timeout=10) == "p"
            record = await stored_expired(children, child.job_id)
            assert record.held is None
        await assert_reads_expired(children, child.job_id)

        async def cancelled() -> bool:
            return await children.get_job_status(grandchild.job_id) == JobStatus.CANCELLED

        await eventually(cancelled)
        async with running_worker([other], nats_url, concurrency=2):
            assert await (await children.enqueue(step, "last")).result(timeout=10) == "last"
        assert not marker.exists()


async def test_deferred_job_whose_dependency_ends_in_time_runs(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q, running_worker([queue], nats_url, concurrency=2):
        parent = await q.enqueue(step, "p", 0.2)
        child = await q.enqueue(step, "c", depends_on=parent, expires=30)
        assert await child.result(timeout=10) == "c"


async def test_enqueue_in_fires_after_its_expiry(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    async with naq.Queue(queue, nats_url) as q, running_worker([queue], nats_url, concurrency=2):
        late = await q.enqueue_in(1.0, touch, str(marker), expires=0.3)
        timely = await q.enqueue_in(0.3, step, "in time", expires=30)
        assert await q.get_job_status(late.job_id) == JobStatus.SCHEDULED
        with pytest.raises(naq.JobCancelledError, match="expired"):
            await late.result(timeout=10)
        assert await timely.result(timeout=10) == "in time"
        await stored_expired(q, late.job_id)  # the schedule fired; the worker did not run it
        await assert_reads_expired(q, late.job_id)
    assert not marker.exists()


async def _cli(nats_url: str, *args: str) -> CliResult:
    return await asyncio.to_thread(naq_cli, *args, "-u", nats_url, env={"COLUMNS": "300"})


async def test_cli_job_shows_expiry(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        lasting = await q.enqueue(step, "x", expires=datetime.now(UTC) + timedelta(minutes=5))
        expired = await q.enqueue(step, "y", expires=0)
        plain = await q.enqueue(step, "z")
        info = await q.get_job_info(lasting.job_id)
        assert info.expires_at is not None

        table = await _cli(nats_url, "job", lasting.job_id)
        assert table.code == 0, table.stderr
        assert table_row(table.stdout, "status") == "pending"
        assert table_row(table.stdout, "expires") == info.expires_at.strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
        data = json.loads((await _cli(nats_url, "job", lasting.job_id, "--json")).stdout)
        assert datetime.fromisoformat(data["expires_at"]) == info.expires_at

        table = await _cli(nats_url, "job", expired.job_id)
        assert table_row(table.stdout, "status") == "cancelled"
        assert table_row(table.stdout, "error").startswith("expired: not started by")

        table = await _cli(nats_url, "job", plain.job_id)
        assert table_row(table.stdout, "expires") == ""
        data = json.loads((await _cli(nats_url, "job", plain.job_id, "--json")).stdout)
        assert data["expires_at"] is None


async def stored_schedule(nats_url: str, schedule_id: str) -> ScheduleRecord | None:
    """The schedule record stored under ``schedule_id``, if any."""
    async with naq.Queue("probe", nats_url) as q:
        store = ScheduleStore(await q.connection())
        await store.ready()
        found = await store.get(schedule_id)
    return found[0] if found is not None else None


async def test_each_recurring_run_expires_after_its_own_run_time(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-expiring-runs"
    sid = f"{queue}-expiring"
    async with naq.Queue(queue, nats_url) as q, running_scheduler(nats_url):
        async with running_worker([queue], nats_url, concurrency=2):
            sched = await q.schedule(
                sched_jobs.record, tag, interval=1, schedule_id=sid, expires=0.5
            )

            async def three_ran() -> bool:
                return len(sched_jobs.runs(tag)) >= 3

            await eventually(three_ran, timeout=15)  # runs 2 and 3 come after the first 0.5 s
        # the template expires relative to each run, not once for all of them
        before = await stored_schedule(nats_url, sid)
        assert before is not None and before.expires_after == 0.5
        assert before.template.expires_at is None
        for job_id, _started in sched_jobs.runs(tag):
            info = await q.get_job_info(job_id)
            assert info.status == JobStatus.COMPLETED
            assert info.expires_at is not None and info.started_at is not None
            # started after its run time, so at most 0.5 s before its expiry
            assert 0 < (info.expires_at - info.started_at).total_seconds() <= 0.5

        async def next_run() -> float | None:
            now = await stored_schedule(nats_url, sid)
            if now is not None and now.runs > before.runs and now.last_run is not None:
                return now.last_run
            return None

        # no worker now: the next run is enqueued, nobody starts it, and it expires
        run_at = await eventually(next_run, timeout=10)
        missed = run_job_id(sched.schedule_id, run_at)
        await asyncio.sleep(max(0.0, run_at + 0.7 - time.time()))
        await assert_reads_expired(q, missed)
        await q.cancel_scheduled_job(sid)
    assert missed not in {job_id for job_id, _ in sched_jobs.runs(tag)}


async def test_schedule_refuses_a_datetime_expiry_and_stores_nothing(
    nats_url: str, queue: str
) -> None:
    sid = f"{queue}-absolute"
    async with naq.Queue(queue, nats_url) as q:
        for when in (datetime.now(UTC) + timedelta(minutes=5), datetime.now() + timedelta(1)):
            with pytest.raises(
                naq.ConfigurationError, match=r"give schedule\(\) expires= as seconds"
            ):
                await q.schedule(sched_jobs.record, "x", interval=60, schedule_id=sid, expires=when)
        assert await stored_schedule(nats_url, sid) is None
        assert await q.list_schedules() == []
        with pytest.raises(naq.ConfigurationError, match="expires must be >= 0"):
            await q.schedule(sched_jobs.record, "x", interval=60, schedule_id=sid, expires=-1)
        assert await stored_schedule(nats_url, sid) is None


async def test_enqueue_many_jobs_read_expired_without_a_worker(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        jobs = await q.enqueue_many([(step, ("a",), {}), (step, ("b",), {})], expires=0.3)
        assert await q.get_job_status(jobs[0].job_id) == JobStatus.PENDING
        info = await q.get_job_info(jobs[1].job_id)
        assert info.expires_at is not None  # answered from the batch record
        await asyncio.sleep(0.5)
        for job in jobs:
            await assert_reads_expired(q, job.job_id)
            record = await stored(q, job.job_id)  # read so; the batch record still says
            assert record is not None and record.status == JobStatus.PENDING.value


async def test_cancel_job_of_an_expired_queued_job_changes_nothing(
    nats_url: str, queue: str
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        job = await q.enqueue(step, "late", expires=0.2)
        batch = await q.enqueue_many([(step, ("late",), {})], expires=0.2)
        await asyncio.sleep(0.4)
        assert await q.cancel_job(job.job_id) is False
        assert await q.cancel_job(batch[0].job_id) is False
        await assert_reads_expired(q, job.job_id)
        await assert_reads_expired(q, batch[0].job_id)
        for job_id in (job.job_id, batch[0].job_id):  # nothing was written
            record = await stored(q, job_id)
            assert record is not None and record.status == JobStatus.PENDING.value
