"""The events stream: a worker and a producer with events on publish each job's life to
``naq.events.<queue>.<kind>``, in order per job; ``naq.watch_events`` and ``naq events`` read
it. Real server, real workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest
from tests import hook_jobs
from tests.cli_run import ROOT, naq_cli
from tests.helpers import queue_worker, running_scheduler

import naq
from naq.events import EVENT_KINDS, Event
from naq.transport.tail import last_sequence


def _queue() -> str:
    return f"events-{uuid.uuid4().hex[:8]}"


async def test_each_jobs_events_arrive_in_order(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_EVENTS", "1")
    queue = _queue()
    n = 60
    done = asyncio.Event()
    reader_events: list[Event] = []

    async def read() -> None:
        async for event in naq.watch_events(queue, nats_url=nats_url):
            reader_events.append(event)
            if event.kind == "worker_stopped":  # after every job's events
                done.set()
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    async with (
        naq.Queue(queue, nats_url=nats_url) as q,
        queue_worker(queue, nats_url, concurrency=8),
    ):
        jobs = [await q.enqueue(hook_jobs.ok, i) for i in range(n // 2)]
        jobs += await q.enqueue_many([(hook_jobs.async_ok, (i,)) for i in range(n // 2)])
        progress = await q.enqueue(hook_jobs.with_progress)
        failing = await q.enqueue(hook_jobs.boom, "no", max_retries=1, retry_delay=0.05)
        for job in [*jobs, progress]:
            await job.result(timeout=10)
        with pytest.raises(naq.JobExecutionError):
            await failing.result(timeout=10)
    await asyncio.wait_for(done.wait(), 15)
    reader.cancel()
    by_job: dict[str, list[str]] = defaultdict(list)
    for event in reader_events:
        if event.job_id:
            by_job[event.job_id].append(event.kind)
    for job in jobs:
        assert by_job[job.job_id] == ["enqueued", "started", "completed"], job.job_id
    assert by_job[progress.job_id] == ["enqueued", "started", "progress", "completed"]
    assert by_job[failing.job_id] == ["enqueued", "started", "retrying", "started", "failed"]
    kinds = [e.kind for e in reader_events]
    assert kinds[0] == "worker_started" or kinds[0] == "enqueued"
    assert "worker_stopped" in kinds
    progressed = next(e for e in reader_events if e.kind == "progress")
    assert progressed.progress == 0.5 and progressed.message == "half"
    failed = next(e for e in reader_events if e.kind == "failed")
    assert failed.error == "ValueError: no" and failed.attempt == 2
    seqs = [e.seq for e in reader_events]
    assert seqs == sorted(seqs)


async def test_events_are_off_by_default(nats_url: str) -> None:
    queue = _queue()
    async with naq.Queue(queue, nats_url=nats_url) as q:
        conn = await q.connection()
        await conn.ensure_events_stream()
        before = await last_sequence(conn, "NAQ_EVENTS")
        async with queue_worker(queue, nats_url):
            job = await q.enqueue(hook_jobs.ok, 1)
            await job.result(timeout=10)
        assert await last_sequence(conn, "NAQ_EVENTS") == before


async def test_dead_and_cancelled_events(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAQ_EVENTS", "1")
    queue = _queue()
    async with naq.Queue(queue, nats_url=nats_url) as q:
        conn = await q.connection()
        await conn.ensure_jobs_stream()
        await conn.publish(f"naq.queue.{queue}", b"not json")
        cancelled = await q.enqueue(hook_jobs.ok, 1)
        assert await q.cancel_job(cancelled.job_id)
        scheduled = await q.enqueue_in(600, hook_jobs.ok, 1)
        assert await q.cancel_job(scheduled.job_id)
        deferred = await q.enqueue(hook_jobs.ok, 1, depends_on=[scheduled.job_id])
        # (its dependency was cancelled: a deferred job on a cancelled one is cancelled)
        parent = await q.enqueue_in(600, hook_jobs.ok, 2)
        waiting = await q.enqueue(hook_jobs.ok, 1, depends_on=[parent.job_id])
        assert await q.cancel_job(waiting.job_id)
        async with queue_worker(queue, nats_url, events=True):
            after = await q.enqueue(hook_jobs.ok, 2)
            await after.result(timeout=10)
    result = naq_cli("events", "--queue", queue, "--json", "--last", "100", "-u", nats_url)
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    kinds = [(e["kind"], e.get("job_id")) for e in lines]
    assert ("dead", None) in kinds
    assert ("cancelled", cancelled.job_id) in kinds
    assert ("cancelled", scheduled.job_id) in kinds  # never reached a worker
    assert ("cancelled", waiting.job_id) in kinds  # deferred, never reached a worker
    assert ("enqueued", deferred.job_id) in kinds
    assert kinds.index(("enqueued", after.job_id)) < kinds.index(("completed", after.job_id))
    assert {k for k, _ in kinds} <= set(EVENT_KINDS)


def test_unknown_kind_is_a_clear_error(nats_url: str) -> None:
    result = naq_cli("events", "--kind", "finished", "-u", nats_url)
    assert result.code == 1
    assert "unknown event kind(s) finished" in result.stderr
    assert "Traceback" not in result.stderr


async def test_scheduler_runs_have_enqueued_events(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_EVENTS", "1")
    queue = _queue()
    seen: list[Event] = []

    async def read() -> None:
        async for event in naq.watch_events(queue, nats_url=nats_url):
            seen.append(event)
            if sum(e.kind == "completed" for e in seen) == 2:
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    async with (
        naq.Queue(queue, nats_url=nats_url) as q,
        running_scheduler(nats_url),
        queue_worker(queue, nats_url),
    ):
        await q.schedule(hook_jobs.ok, 1, interval=0.2, repeat=2)
        await asyncio.wait_for(reader, 15)
    by_job: dict[str, list[str]] = defaultdict(list)
    for event in seen:
        if event.job_id:
            by_job[event.job_id].append(event.kind)
    assert sorted(by_job.values()) == [["enqueued", "started", "completed"]] * 2


async def test_dependants_cancelled_by_a_failure_have_cancelled_events(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_EVENTS", "1")
    queue = _queue()
    seen: list[Event] = []
    async with naq.Queue(queue, nats_url=nats_url) as q:
        parent = await q.enqueue_in(0.3, hook_jobs.boom, "parent fails")
        child = await q.enqueue(hook_jobs.ok, 1, depends_on=[parent.job_id])
        grandchild = await q.enqueue(hook_jobs.ok, 2, depends_on=[child.job_id])

        async def read() -> None:
            async for event in naq.watch_events(queue, nats_url=nats_url):
                seen.append(event)
                if {e.job_id for e in seen if e.kind == "cancelled"} == {
                    child.job_id,
                    grandchild.job_id,
                }:
                    return

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.2)
        async with queue_worker(queue, nats_url):
            await asyncio.wait_for(reader, 15)
    cancelled = {e.job_id: e for e in seen if e.kind == "cancelled"}
    assert parent.job_id in (cancelled[child.job_id].error or "")


def test_naq_events_follow_prints_new_events_until_interrupted(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_EVENTS", "1")
    queue = _queue()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    command = [sys.executable, "-m", "naq", "events", "--follow", "--json", "-n", "0"]
    follower = subprocess.Popen(
        [*command, "--queue", queue, "-u", nats_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
        cwd=ROOT,
        text=True,
    )

    async def run_one() -> None:
        async with naq.Queue(queue, nats_url=nats_url) as q, queue_worker(queue, nats_url):
            job = await q.enqueue(hook_jobs.ok, 4)
            await job.result(timeout=10)

    try:
        time.sleep(1.5)  # its reader is set up by then
        asyncio.run(run_one())
        time.sleep(1.0)  # the last events reach it
    finally:
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=10)
    assert follower.returncode == 0, err
    assert "Traceback" not in err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert {e["queue"] for e in events} == {queue}
    kinds = [e["kind"] for e in events]
    assert sorted(kinds) == sorted(
        ["enqueued", "worker_started", "started", "completed", "worker_stopped"]
    )
    assert kinds.index("enqueued") < kinds.index("started") < kinds.index("completed")
    assert kinds.index("worker_started") < kinds.index("started")
    assert kinds[-1] == "worker_stopped"
