"""``naq job`` and ``naq job-control ID cancel`` for dependencies and cancellation, run as a
real ``naq`` subprocess against a real nats-server (workers run in the test's process)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.cli_run import CliResult, naq_cli, table_row
from tests.dep_jobs import boom, sleep_until_cancelled, step
from tests.helpers import eventually

import naq
from naq import JobStatus

pytestmark = pytest.mark.asyncio

#: Wide enough that tables never fold a 32-character job id.
WIDE = {"COLUMNS": "300"}


async def cli(nats_url: str, *args: str) -> CliResult:
    """``naq ARGS -u URL`` in a thread (the test's loop keeps serving its worker)."""
    return await asyncio.to_thread(naq_cli, *args, "-u", nats_url, env=WIDE)


def _one_error_line(out: CliResult) -> str:
    assert out.code == 1, (out.code, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    assert len(out.error_lines) == 1, out.stderr
    return out.error_lines[0]


async def test_job_shows_what_a_deferred_job_waits_on(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        first = await q.enqueue(step, "a")
        second = await q.enqueue(step, "b")
        child = await q.enqueue(step, "c", depends_on=[first, second], allow_failure=True)
        plain = await q.enqueue(step, "d")

        table = await cli(nats_url, "job", child.job_id)
        assert table.code == 0, table.stderr
        assert table_row(table.stdout, "status") == "deferred"
        assert table_row(table.stdout, "depends on") == f"{first.job_id}, {second.job_id}"
        assert table_row(table.stdout, "waiting on") == f"{first.job_id}, {second.job_id}"
        assert table_row(table.stdout, "allow failure") == "yes"

        data = json.loads((await cli(nats_url, "job", child.job_id, "--json")).stdout)
        assert data["status"] == "deferred"
        assert data["depends_on"] == [first.job_id, second.job_id]
        assert data["waiting_on"] == [first.job_id, second.job_id]
        assert data["allow_failure"] is True

        # a job without dependencies shows none of these rows
        table = await cli(nats_url, "job", plain.job_id)
        assert table.code == 0, table.stderr
        for field in ("depends on", "waiting on", "allow failure"):
            assert table_row(table.stdout, field) == "", field


async def test_job_shows_why_a_dependant_was_cancelled(
    nats_url: str, queue: str, burst: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        parent = await q.enqueue(boom)
        child = await q.enqueue(step, "child", depends_on=parent)
        await burst([queue], nats_url)
        assert await q.get_job_status(child.job_id) == JobStatus.CANCELLED

    table = await cli(nats_url, "job", child.job_id)
    assert table.code == 0, table.stderr
    assert table_row(table.stdout, "status") == "cancelled"
    assert table_row(table.stdout, "depends on") == parent.job_id
    assert table_row(table.stdout, "waiting on") == ""  # shown only while deferred
    assert table_row(table.stdout, "error") == (
        f"dependency {parent.job_id} ended failed; this job never ran"
    )


async def test_cancel_a_queued_job(nats_url: str, queue: str, burst: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        job = await q.enqueue(step, "never")
        out = await cli(nats_url, "job-control", job.job_id, "cancel")
        assert out.code == 0, out.stderr
        assert out.stdout.strip() == f"cancelled job {job.job_id}"
        assert out.error_lines == []  # that one line is all it says
        assert await q.get_job_status(job.job_id) == JobStatus.CANCELLED
        after = await q.enqueue(step, "after")
        await burst([queue], nats_url)
        assert await after.result() == "after"
        info = await q.get_job_info(job.job_id)
        assert info.status == JobStatus.CANCELLED and info.started_at is None


async def test_cancel_a_deferred_job_cancels_its_dependants(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        parent = await q.enqueue(step, "p")
        deferred = await q.enqueue(step, "d", depends_on=parent)
        downstream = await q.enqueue(step, "x", depends_on=deferred)
        out = await cli(nats_url, "job-control", deferred.job_id, "cancel", "--json")
        assert out.code == 0, out.stderr
        assert json.loads(out.stdout) == {"job_id": deferred.job_id, "cancelled": True}
        assert await q.get_job_status(deferred.job_id) == JobStatus.CANCELLED
        assert await q.get_job_status(downstream.job_id) == JobStatus.CANCELLED
        assert await q.get_job_status(parent.job_id) == JobStatus.PENDING


async def test_cancel_a_running_job(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"

    async def running(q: naq.Queue, job_id: str) -> bool:
        return await q.get_job_status(job_id) == JobStatus.RUNNING

    async with (
        naq.Queue(queue, nats_url) as q,
        running_worker([queue], nats_url, concurrency=2),
    ):
        job = await q.enqueue(sleep_until_cancelled, str(marker))
        await eventually(lambda: running(q, job.job_id))
        out = await cli(nats_url, "job-control", job.job_id, "cancel")
        assert out.code == 0, out.stderr
        assert out.stdout.strip() == f"cancelled job {job.job_id}"
        with pytest.raises(naq.JobCancelledError):
            await q.fetch_job_result(job.job_id, timeout=10)
    assert marker.exists()  # the job's task was cancelled, not left to finish


async def test_cancel_a_finished_job_says_so(nats_url: str, queue: str, burst: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        done = await q.enqueue(step, "done")
        failed = await q.enqueue(boom)
        await burst([queue], nats_url)
        for job, status in ((done, "completed"), (failed, "failed")):
            out = await cli(nats_url, "job-control", job.job_id, "cancel")
            line = _one_error_line(out)
            assert line.endswith(f"job {job.job_id} already {status}; nothing to cancel"), line
            assert out.stdout == ""
        assert await q.fetch_job_result(done.job_id) == "done"


@pytest.mark.parametrize("target", ["no-such-job", "not a job id"])
async def test_cancel_an_unknown_id_is_one_line(nats_url: str, target: str) -> None:
    line = _one_error_line(await cli(nats_url, "job-control", target, "cancel"))
    assert "nothing to cancel" in line and target in line


async def test_cancel_still_takes_a_recurring_schedule_first(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        schedule = await q.schedule(step, "tick", interval=3600, schedule_id=f"{queue}-hourly")
        out = await cli(nats_url, "job-control", schedule.schedule_id, "cancel")
        assert out.code == 0, out.stderr
        assert out.stdout.strip() == f"cancelled schedule {schedule.schedule_id}"
        assert await q.list_schedules() == []
