"""Times in public records (JobInfo, WorkerInfo, DeadLetter) are aware UTC datetimes, ``--json``
writes them in ISO 8601, and ``naq list-workers`` reads well in an 80-column terminal."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from tests import jobs

import naq
from conftest import WAIT, wait_for
from naq.deadletter import H_FAILED_AT, H_KIND, H_QUEUE, H_REASON, DeadLetter
from naq.utctime import EARLIEST, LATEST, from_epoch

ROOT = Path(__file__).resolve().parent.parent
#: How far a stored time may be from the test's clock (the server is local; generous).
SLACK = timedelta(seconds=60)


def assert_utc_now(moment: datetime | None) -> None:
    """``moment`` is an aware UTC datetime close to now."""
    assert isinstance(moment, datetime), moment
    assert moment.tzinfo is UTC, moment
    assert abs(datetime.now(UTC) - moment) < SLACK, moment


def assert_iso_utc(text: object) -> datetime:
    """``text`` is an ISO 8601 string with a ``+00:00`` offset; returns it parsed."""
    assert isinstance(text, str), text
    assert "T" in text and text.endswith("+00:00"), text  # ISO 8601: date T time, offset
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


async def naq_cli(url: str, *args: str, **env: str) -> tuple[int, str, str]:
    """Run ``naq ARGS`` as a subprocess against ``url``; returns (exit code, stdout, stderr)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NAQ_", "COLUMNS"))}
    environ.update(NAQ_NATS_URL=url, **env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "naq",
        *args,
        cwd=ROOT,
        env=environ,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_json(url: str, *args: str) -> Any:
    code, out, err = await naq_cli(url, *args, "--json")
    assert code == 0, f"exit {code}\n{out}\n{err}"
    return json.loads(out)


async def dead_letters(queue: str, url: str) -> list[DeadLetter]:
    async def found() -> list[DeadLetter] | None:
        return await naq.list_dead_letters(queue, nats_url=url) or None

    return await wait_for(found)


# --------------------------------------------------------------------------- the Python API


def test_epoch_seconds_become_aware_utc_datetimes() -> None:
    assert from_epoch(None) is None
    assert from_epoch(0.0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_epoch(1.5) == datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    # a stored time no datetime can hold reads as the nearest one instead of raising
    assert from_epoch(1e15) == LATEST
    assert from_epoch(-1e15) == EARLIEST
    assert from_epoch(float("inf")) == LATEST
    assert from_epoch(float("nan")) == EARLIEST


async def test_job_info_times_are_aware_utc(nats_url: str, queue: str, running_worker: Any) -> None:
    job = await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
    pending = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert_utc_now(pending.enqueued_at)
    assert pending.started_at is None and pending.finished_at is None
    assert pending.next_attempt_at is None

    async with running_worker([queue], nats_url):
        assert await job.result(timeout=WAIT) == 3

    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    for moment in (info.enqueued_at, info.started_at, info.finished_at):
        assert_utc_now(moment)
    (attempt,) = info.attempts
    assert_utc_now(attempt.started_at)
    assert_utc_now(attempt.finished_at)
    assert attempt.started_at == info.started_at
    assert info.enqueued_at <= info.started_at <= info.finished_at  # type: ignore[operator]


async def test_scheduled_job_info_says_when_it_is_due(nats_url: str, queue: str) -> None:
    job = await naq.enqueue_in(
        timedelta(hours=1), jobs.add, 1, 2, queue_name=queue, nats_url=nats_url
    )
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.next_attempt_at is not None and info.next_attempt_at.tzinfo is UTC
    assert abs(info.next_attempt_at - (datetime.now(UTC) + timedelta(hours=1))) < SLACK

    as_json = await cli_json(nats_url, "job", job.job_id)
    assert assert_iso_utc(as_json["next_attempt_at"]) == info.next_attempt_at


async def test_worker_info_times_are_aware_utc(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with running_worker([queue], nats_url, heartbeat_interval=0.2) as worker:

        async def mine() -> naq.WorkerInfo | None:
            found = await naq.list_workers(nats_url=nats_url)
            return next((w for w in found if w.worker_id == worker.worker_id), None)

        info = await wait_for(mine)
    assert_utc_now(info.started_at)
    assert_utc_now(info.last_heartbeat)
    assert info.started_at <= info.last_heartbeat


async def test_dead_letter_failed_at_is_aware_utc(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    await naq.enqueue("os:system", "echo no", queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url):
        (entry,) = await dead_letters(queue, nats_url)
    assert entry.kind == "refused"
    assert_utc_now(entry.failed_at)
    assert assert_iso_utc(entry.to_json()["failed_at"]) == entry.failed_at


async def test_dead_letter_with_an_unreadable_time_is_still_listed(
    nats_url: str, queue: str
) -> None:
    await naq.list_dead_letters(queue, nats_url=nats_url)  # creates the dead-letter stream
    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:
        headers = {H_REASON: "odd", H_QUEUE: queue, H_KIND: "failed", H_FAILED_AT: "soon"}
        await nc.jetstream().publish(f"naq.dlq.{queue}", b"{}", headers=headers)
    finally:
        await nc.close()
    (entry,) = await naq.list_dead_letters(queue, nats_url=nats_url)
    assert entry.reason == "odd"
    assert entry.failed_at is None
    assert entry.to_json()["failed_at"] is None


# --------------------------------------------------------------------------- the CLI


async def test_cli_json_writes_times_in_iso_8601_utc(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    job = await naq.enqueue(jobs.add, 2, 3, queue_name=queue, nats_url=nats_url)
    await naq.enqueue("os:system", "echo no", queue_name=queue, nats_url=nats_url)
    async with running_worker([queue], nats_url, heartbeat_interval=0.2) as worker:
        assert await job.result(timeout=WAIT) == 5
        await dead_letters(queue, nats_url)

        workers = await cli_json(nats_url, "list-workers")
        (mine,) = [w for w in workers if w["worker_id"] == worker.worker_id]
        started = assert_iso_utc(mine["started_at"])
        assert started <= assert_iso_utc(mine["last_heartbeat"])
        assert_utc_now(started)

    info = await cli_json(nats_url, "job", job.job_id)
    for key in ("enqueued_at", "started_at", "finished_at"):
        assert_utc_now(assert_iso_utc(info[key]))
    (attempt,) = info["attempts"]
    assert assert_iso_utc(attempt["started_at"]) == assert_iso_utc(info["started_at"])
    assert assert_iso_utc(attempt["finished_at"]) == assert_iso_utc(info["finished_at"])
    assert info["next_attempt_at"] is None

    (entry,) = await cli_json(nats_url, "dlq", "list", "--queue", queue)
    assert_utc_now(assert_iso_utc(entry["failed_at"]))
    shown = await cli_json(nats_url, "dlq", "show", str(entry["id"]))
    assert shown["failed_at"] == entry["failed_at"]


async def test_list_workers_reads_well_in_80_columns(nats_url: str, running_worker: Any) -> None:
    queue = f"cols-{uuid.uuid4().hex[:8]}"  # a short name, as queues usually have
    async with running_worker(
        [queue], nats_url, heartbeat_interval=1.0, worker_name="eighty-columns"
    ) as worker:

        async def listed() -> bool:
            found = await naq.list_workers(nats_url=nats_url)
            return any(w.worker_id == worker.worker_id for w in found)

        await wait_for(listed)
        code, out, err = await naq_cli(nats_url, "list-workers", COLUMNS="80")
    assert code == 0, f"exit {code}\n{out}\n{err}"
    assert worker.worker_id in out, out  # whole, on one line
    assert "…" not in out, out  # no header or cell cut short
    assert queue in out, out
    for header in ("worker id", "queues", "heartbeat", "status"):
        assert header in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "s ago" in out, out  # the heartbeat's age
