"""Per-queue completed/failed totals shared by every worker (``naq.stats``), shown by
``naq.list_queues()`` and the ``naq queues`` table, against a real nats-server."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import pytest
from rich.console import Console
from tests import helpers, jobs
from tests.cli_run import naq_cli

import naq
from conftest import WAIT, wait_for
from naq import stats
from naq.cli.queues_table import queues_table
from naq.errors import ConfigurationError, JobExecutionError
from naq.info import QueueInfo
from naq.settings import load_settings
from naq.transport import Connection

ALL_HEADERS = (
    *("queue", "waiting", "running", "retrying", "scheduled", "deferred", "completed"),
    *("failed", "dead"),
    *("done/min", "fail/min", "workers", "consumers", "paused"),
)


async def queue_info(nats_url: str, queue: str) -> QueueInfo | None:
    found = [q for q in await naq.list_queues(nats_url=nats_url) if q.name == queue]
    return found[0] if found else None


async def counts(nats_url: str, queue: str) -> tuple[int, int]:
    info = await queue_info(nats_url, queue)
    return (info.completed, info.failed) if info is not None else (0, 0)


async def run_jobs(nats_url: str, queue: str, succeed: int, fail: int) -> None:
    """Enqueue and wait for ``succeed`` jobs that complete and ``fail`` that fail for good."""
    good = [
        await naq.enqueue(jobs.add, i, 1, queue_name=queue, nats_url=nats_url)
        for i in range(succeed)
    ]
    bad = [
        await naq.enqueue(jobs.fail, "no", queue_name=queue, nats_url=nats_url) for _ in range(fail)
    ]
    for job in good:
        await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    for job in bad:
        with pytest.raises(JobExecutionError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)


# --------------------------------------------------------------------------- worker counts


async def test_list_queues_counts_completed_and_failed_jobs(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with running_worker([queue], nats_url, concurrency=4, heartbeat_interval=0.2):
        await run_jobs(nats_url, queue, succeed=5, fail=2)
        # flushed by a heartbeat while the worker runs
        assert await wait_for(lambda: _equals(counts(nats_url, queue), (5, 2)))
        await asyncio.sleep(0.6)  # more heartbeats add nothing twice
        assert await counts(nats_url, queue) == (5, 2)
    # and the stopped worker's last flush adds nothing twice either
    assert await counts(nats_url, queue) == (5, 2)


async def test_jobs_finished_since_the_last_heartbeat_count_at_shutdown(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    # heartbeats far apart: only the shutdown flush can add these
    async with running_worker([queue], nats_url, heartbeat_interval=3600):
        await run_jobs(nats_url, queue, succeed=3, fail=1)
        assert await counts(nats_url, queue) == (0, 0)
    assert await counts(nats_url, queue) == (3, 1)


async def test_workers_of_one_queue_add_to_the_same_totals(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with (
        running_worker([queue], nats_url, concurrency=2, heartbeat_interval=0.2),
        running_worker([queue], nats_url, concurrency=2, heartbeat_interval=0.2),
    ):
        await run_jobs(nats_url, queue, succeed=20, fail=4)
    assert await counts(nats_url, queue) == (20, 4)
    # a later worker adds to them, never starts over
    async with running_worker([queue], nats_url, heartbeat_interval=0.2):
        await run_jobs(nats_url, queue, succeed=1, fail=0)
    assert await counts(nats_url, queue) == (21, 4)


async def test_counts_are_per_queue(nats_url: str, queue: str, running_worker: Any) -> None:
    other = f"{queue[:40]}-other"
    async with running_worker([queue, other], nats_url, heartbeat_interval=0.2):
        await run_jobs(nats_url, queue, succeed=2, fail=0)
        await run_jobs(nats_url, other, succeed=0, fail=3)
    assert await counts(nats_url, queue) == (2, 0)
    assert await counts(nats_url, other) == (0, 3)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


# --------------------------------------------------------------------------- naq.stats


async def test_concurrent_adds_from_many_connections_all_count(nats_url: str, queue: str) -> None:
    conns = [await Connection(load_settings(nats_url)).connect() for _ in range(4)]
    try:
        await asyncio.gather(*(stats.add(conns[i % 4], queue, 1, i % 2) for i in range(40)))
        totals = (await stats.read_all(conns[0]))[queue]
        assert (totals.completed, totals.failed) == (40, 20)
        # added just now: all of them in the last minute too
        assert (totals.completed_last_minute, totals.failed_last_minute) == (40, 20)
    finally:
        for conn in conns:
            await conn.close()


@pytest.mark.parametrize(
    ("queue_name", "completed", "failed"),
    [("ok", -1, 0), ("ok", 0, True), ("ok", 1.5, 0), ("bad.name", 1, 0), ("", 1, 0)],
)
async def test_add_refuses_bad_input(
    nats_url: str, queue_name: str, completed: Any, failed: Any
) -> None:
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        with pytest.raises(ConfigurationError):
            await stats.add(conn, queue_name, completed, failed)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- naq queues


def _table_lines(info: QueueInfo, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(queues_table([info], console))
    return console.export_text().splitlines()


_BUSY_QUEUE = QueueInfo(
    name="emails-priority",
    waiting=1234567,
    running=10,
    retrying=4,
    scheduled=45,
    deferred=3,
    completed=98765432,
    failed=12345,
    dead=7,
    completed_last_minute=600,
    failed_last_minute=12,
    workers=10,
    consumers=3,
    paused=True,
)


def test_table_shows_every_count_in_132_columns() -> None:
    lines = _table_lines(_BUSY_QUEUE, 132)
    assert all(len(line) <= 132 for line in lines), lines
    header = next(line for line in lines if line.split()[:1] == ["queue"])
    assert header.split() == [*ALL_HEADERS], lines
    row = next(line for line in lines if line.startswith("emails-priority"))
    assert row.split() == [
        "emails-priority",
        *("1234567", "10", "4", "45", "3", "98765432", "12345", "7", "600", "12", "10", "3"),
        "yes",
    ]
    assert "wider terminal" not in "\n".join(lines)


def test_table_in_80_columns_leaves_out_the_least_important_and_says_so() -> None:
    lines = _table_lines(_BUSY_QUEUE, 80)
    assert all(len(line) <= 80 for line in lines), lines
    header = next(line for line in lines if line.split()[:1] == ["queue"])
    shown = ["queue", "waiting", "running", "deferred", "failed", "dead"]
    assert header.split() == [*shown, "done/min", "fail/min", "paused"], lines
    row = next(line for line in lines if line.startswith("emails-priority"))
    assert row.split() == [
        "emails-priority",
        "1234567",
        "10",
        "3",
        "12345",
        "7",
        "600",
        "12",
        "yes",
    ]
    caption = " ".join(" ".join(lines).split())
    assert "wider terminal for: consumers, workers, completed, scheduled, retrying" in caption


def test_naq_queues_shows_scheduled_and_dead_counts(nats_url: str) -> None:
    queue = f"qc-{uuid.uuid4().hex[:8]}"

    async def prepare() -> None:
        async with helpers.running_worker([queue], nats_url, heartbeat_interval=0.2):
            await run_jobs(nats_url, queue, succeed=2, fail=1)  # the failure is dead-lettered
        await naq.enqueue_in(3600, jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
        await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
        await naq.close()

    asyncio.run(prepare())
    # wide: other tests of this module leave queues with long names on the server
    proc = naq_cli("queues", "-u", nats_url, env={"COLUMNS": "200"})
    assert proc.code == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 200 for line in lines), proc.stdout
    header = next(line for line in lines if line.split()[:1] == ["queue"])
    assert header.split() == [*ALL_HEADERS], proc.stdout
    row = next(line for line in lines if line.startswith(queue))
    # waiting, running, retrying, scheduled, deferred, completed, failed, dead, done/min,
    # fail/min, workers, consumers, paused
    expected = [queue, "1", "0", "0", "1", "0", "2", "1", "1", "2", "1", "0", "1", "no"]
    assert row.split() == expected, proc.stdout


def test_naq_queues_shows_waiting_jobs_per_priority(nats_url: str) -> None:
    queue = f"qp-{uuid.uuid4().hex[:8]}"

    async def prepare() -> None:
        # a consumer for the listing to find, then jobs waiting on three priorities
        await naq.Worker([queue], nats_url=nats_url, burst=True).run()
        for priority in (0, 0, 4, 9):
            await naq.enqueue(
                jobs.add, 1, 2, priority=priority, queue_name=queue, nats_url=nats_url
            )
        await naq.close()

    asyncio.run(prepare())
    proc = naq_cli("queues", "-u", nats_url, env={"COLUMNS": "80"})
    assert proc.code == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    assert f"{queue} 9:1 4:1 0:2" in " ".join(proc.stdout.split()), proc.stdout
    listed = naq_cli("queues", "--json", "-u", nats_url)
    assert '"waiting_by_priority"' in listed.stdout, listed.stdout
