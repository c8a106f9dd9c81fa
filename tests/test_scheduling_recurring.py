"""Recurring schedules and the Scheduler against a real nats-server: cron and intervals,
repeat, pause/resume, compare-and-set against concurrent fires, several schedulers at once,
leader hand-over (stop, kill, stall) without duplicates, and misfire policies."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests import sched_jobs
from tests.helpers import running_scheduler

import naq
from conftest import WAIT, wait_for
from naq.scheduling.leader import LeaderSession
from naq.scheduling.lock import LeaderLock
from naq.scheduling.runs import run_job_id
from naq.scheduling.store import ScheduleStore
from naq.settings import load_settings
from naq.transport import Connection, kv

ROOT = Path(__file__).resolve().parents[1]


async def until(check: Any, timeout: float = WAIT) -> Any:
    async def probe() -> Any:
        return check()

    return await wait_for(probe, timeout, interval=0.01)


def ids(tag: str) -> list[str]:
    return [job_id for job_id, _ in sched_jobs.runs(tag)]


async def test_cron_every_second_with_repeat_makes_exactly_that_many_jobs(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-cron"
    async with running_worker([queue], nats_url, concurrency=4), running_scheduler(nats_url):
        sched = await naq.schedule(
            sched_jobs.record,
            tag,
            cron="*/1 * * * * *",
            repeat=3,
            queue_name=queue,
            nats_url=nats_url,
        )
        assert sched.cron == "*/1 * * * * *" and sched.repeat == 3 and sched.runs == 0
        assert sched.next_run is not None and sched.next_run.microsecond == 0
        await until(lambda: len(ids(tag)) >= 3)
        await asyncio.sleep(1.3)  # a fourth run would have come by now
    ran = ids(tag)
    assert len(ran) == 3 and len(set(ran)) == 3
    for job_id in ran:
        assert job_id.startswith(f"{sched.schedule_id}-")
        info = await naq.get_job_info(job_id, nats_url=nats_url)
        assert info.schedule_id == sched.schedule_id
        assert info.status == naq.JobStatus.COMPLETED
        assert await naq.fetch_job_result(job_id, nats_url=nats_url) == job_id  # own result
    # runs are on whole seconds, one second apart
    stamps = sorted(started for _, started in sched_jobs.runs(tag))
    assert all(0.5 < b - a < 1.5 for a, b in itertools.pairwise(stamps))
    assert await naq.list_schedules(queue_name=queue, nats_url=nats_url) == []  # finished


async def test_interval_as_timedelta_runs_at_that_pace(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-interval"
    async with running_worker([queue], nats_url, concurrency=4), running_scheduler(nats_url):
        created = time.time()
        sched = await naq.schedule(
            sched_jobs.arecord,
            tag,
            interval=timedelta(milliseconds=400),
            repeat=3,
            schedule_id=f"{queue}-every",
            queue_name=queue,
            nats_url=nats_url,
        )
        assert sched.schedule_id == f"{queue}-every" and sched.interval == 0.4
        await until(lambda: len(ids(tag)) >= 3)
    stamps = [started for _, started in sched_jobs.runs(tag)]
    assert created + 0.4 <= stamps[0] < created + 1.0
    assert all(0.2 < b - a < 0.6 for a, b in itertools.pairwise(stamps))


async def test_cron_in_a_time_zone(nats_url: str, queue: str) -> None:
    sched = await naq.schedule(
        sched_jobs.record,
        "tz",
        cron="30 9 * * *",
        timezone="Europe/Berlin",
        queue_name=queue,
        nats_url=nats_url,
    )
    assert sched.next_run is not None and sched.timezone == "Europe/Berlin"
    local = sched.next_run.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute, local.second) == (9, 30, 0)
    assert sched.next_run - datetime.now(UTC) <= timedelta(days=1)
    six = await naq.schedule(
        sched_jobs.record,
        "tz",
        cron="15 30 9 * * *",
        timezone="Asia/Kolkata",
        queue_name=queue,
        nats_url=nats_url,
    )
    assert six.next_run is not None
    local = six.next_run.astimezone(ZoneInfo("Asia/Kolkata"))
    assert (local.hour, local.minute, local.second) == (9, 30, 15)
    for s in (sched, six):
        assert await naq.cancel_scheduled_job(s.schedule_id, nats_url=nats_url)


async def test_pause_stops_runs_and_resume_continues(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-pause"
    async with running_worker([queue], nats_url, concurrency=4), running_scheduler(nats_url):
        sched = await naq.schedule(
            sched_jobs.record, tag, interval=0.3, queue_name=queue, nats_url=nats_url
        )
        await until(lambda: len(ids(tag)) >= 2)
        paused = await naq.pause_scheduled_job(sched.schedule_id, nats_url=nats_url)
        assert paused.status == "paused"
        await asyncio.sleep(0.1)  # a run claimed just before the pause may still land
        count = len(ids(tag))
        await asyncio.sleep(1.0)
        assert len(ids(tag)) == count
        [listed] = await naq.list_schedules(queue_name=queue, nats_url=nats_url)
        assert listed.status == "paused" and listed.runs == count
        resumed = await naq.resume_scheduled_job(sched.schedule_id, nats_url=nats_url)
        assert resumed.status == "active"
        assert resumed.next_run is not None and resumed.next_run.timestamp() > time.time()
        await until(lambda: len(ids(tag)) >= count + 2)
        assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url) is True
    assert len(set(ids(tag))) == len(ids(tag))


async def test_a_pause_racing_a_fire_is_never_undone(nats_url: str, queue: str) -> None:
    sched = await naq.schedule(
        sched_jobs.record, "race", interval=60, queue_name=queue, nats_url=nats_url
    )
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        store = ScheduleStore(conn)
        lock = LeaderLock(conn, "test-race", 5, key=f"test-{queue}")
        assert await lock.acquire()
        session = LeaderSession(conn, conn.settings, lock, grace=1.0, stats={})
        # the leader read the schedule (due now) ...
        found = await store.get(sched.schedule_id)
        assert found is not None
        seen, revision = found
        import msgspec

        seen = msgspec.structs.replace(seen, next_run=time.time() - 0.01)
        # ... a user pauses it before the leader's write lands ...
        await naq.pause_scheduled_job(sched.schedule_id, nats_url=nats_url)
        # ... so the leader's compare-and-set fails, it re-reads, sees "paused", fires nothing
        await session._fire(seen, revision)
        after = await store.get(sched.schedule_id)
        assert after is not None and after[0].status == "paused" and after[0].runs == 0
        assert session.stats.get("runs", 0) == 0

        # the other order: the leader claims a run first, then the pause lands on top of it
        await naq.resume_scheduled_job(sched.schedule_id, nats_url=nats_url)
        current = await store.get(sched.schedule_id)
        assert current is not None
        due = msgspec.structs.replace(current[0], next_run=time.time() - 0.01)
        revision = await store.write(due, current[1])
        await session._fire(due, revision)
        paused = await naq.pause_scheduled_job(sched.schedule_id, nats_url=nats_url)
        assert paused.status == "paused" and paused.runs == 1
        await lock.release()
    finally:
        await conn.close()
    assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url)


async def test_pause_and_resume_while_runs_fire_fast(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-fast"
    async with running_worker([queue], nats_url, concurrency=8), running_scheduler(nats_url):
        sched = await naq.schedule(
            sched_jobs.record, tag, interval=0.02, queue_name=queue, nats_url=nats_url
        )
        for _ in range(10):
            await asyncio.sleep(0.05)
            assert (
                await naq.pause_scheduled_job(sched.schedule_id, nats_url=nats_url)
            ).status == "paused"
            await asyncio.sleep(0.05)
            [state] = await naq.list_schedules(queue_name=queue, nats_url=nats_url)
            assert state.status == "paused"  # never undone by a run firing meanwhile
            await naq.resume_scheduled_job(sched.schedule_id, nats_url=nats_url)
        await naq.pause_scheduled_job(sched.schedule_id, nats_url=nats_url)
        await asyncio.sleep(0.2)
        [state] = await naq.list_schedules(queue_name=queue, nats_url=nats_url)
        await until(lambda: len(ids(tag)) >= state.runs)  # every claimed run ran ...
        await asyncio.sleep(0.3)
        assert len(ids(tag)) == state.runs  # ... and nothing after the pause
        assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url)
    assert len(set(ids(tag))) == len(ids(tag)) > 0


async def test_two_schedulers_enqueue_each_run_once(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-two"
    async with (
        running_worker([queue], nats_url, concurrency=4),
        running_scheduler(nats_url, lock_ttl=2) as first,
        running_scheduler(nats_url, lock_ttl=2) as second,
    ):
        sched = await naq.schedule(
            sched_jobs.record, tag, interval=0.2, repeat=8, queue_name=queue, nats_url=nats_url
        )
        await until(lambda: len(ids(tag)) >= 8)
        await asyncio.sleep(0.5)
        assert [first.is_leader, second.is_leader].count(True) == 1
    ran = ids(tag)
    assert len(ran) == 8 and len(set(ran)) == 8
    assert all(j.startswith(sched.schedule_id) for j in ran)


async def test_stopped_leader_hands_over_without_duplicates(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-handover"
    async with (
        running_worker([queue], nats_url, concurrency=4),
        running_scheduler(nats_url, lock_ttl=2) as one,
        running_scheduler(nats_url, lock_ttl=2) as two,
    ):
        await until(lambda: one.is_leader or two.is_leader)
        leader, standby = (one, two) if one.is_leader else (two, one)
        sched = await naq.schedule(
            sched_jobs.record, tag, interval=0.25, queue_name=queue, nats_url=nats_url
        )
        await until(lambda: len(ids(tag)) >= 3)
        stopped = time.time()
        await leader.stop()  # graceful: the lock is released at once
        before = len(ids(tag))
        await until(lambda: standby.is_leader, timeout=3)
        assert time.time() - stopped < 1.5  # a follower polls the lock every ttl/4 s
        await until(lambda: len(ids(tag)) >= before + 3)
        assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url)
    ran = ids(tag)
    assert len(ran) == len(set(ran))
    times = sorted(float(started) for _, started in sched_jobs.runs(tag))
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.0  # no long gap


def _spawn_scheduler(nats_url: str, log: Path, ttl: float = 2.0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NAQ_LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "naq", "scheduler", "-u", nats_url, "--lock-ttl", str(ttl)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _lock_owner(nats_url: str) -> str | None:
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        entry = await kv.get(conn, "naq_scheduler", "leader")
        return json.loads(entry.value).get("owner") if entry is not None else None
    finally:
        await conn.close()


async def _subprocess_leads(nats_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async def leads() -> bool:
        owner = await _lock_owner(nats_url)
        return owner is not None and owner in await asyncio.to_thread(log.read_text)

    await wait_for(leads, WAIT)
    assert proc.poll() is None


async def test_killed_leader_is_replaced_and_runs_continue_once(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    tag = f"{queue}-kill"
    log = tmp_path / "leader.log"
    proc = _spawn_scheduler(nats_url, log)
    try:
        await _subprocess_leads(nats_url, proc, log)
        async with (
            running_worker([queue], nats_url, concurrency=4),
            running_scheduler(nats_url, lock_ttl=2) as standby,
        ):
            sched = await naq.schedule(
                sched_jobs.record, tag, interval=0.3, queue_name=queue, nats_url=nats_url
            )
            await until(lambda: len(ids(tag)) >= 2)
            assert not standby.is_leader
            proc.send_signal(signal.SIGKILL)  # no release: the lock must expire
            killed = time.time()
            proc.wait(5)
            await until(lambda: standby.is_leader, timeout=5)
            took = time.time() - killed
            before = len(ids(tag))
            await until(lambda: len(ids(tag)) >= before + 3)
            assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert took < 2 + 1.5  # lock TTL plus a poll
    ran = ids(tag)
    assert len(ran) == len(set(ran))


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})")


async def test_stalled_leader_loses_the_lock_and_writes_nothing_after(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    tag = f"{queue}-stall"
    log = tmp_path / "leader.log"
    proc = _spawn_scheduler(nats_url, log)
    try:
        await _subprocess_leads(nats_url, proc, log)
        async with (
            running_worker([queue], nats_url, concurrency=4),
            running_scheduler(nats_url, lock_ttl=2) as standby,
        ):
            sched = await naq.schedule(
                sched_jobs.record, tag, interval=0.3, queue_name=queue, nats_url=nats_url
            )
            await until(lambda: len(ids(tag)) >= 2)
            proc.send_signal(signal.SIGSTOP)  # a stall: alive, holding the lock, silent
            await until(lambda: standby.is_leader, timeout=5)
            proc.send_signal(signal.SIGCONT)
            woke = datetime.now()

            async def stepped_down() -> bool:
                text = await asyncio.to_thread(log.read_text)
                return "leader term ended: lock expired" in text or "lost the lock" in text

            await wait_for(stepped_down, 5)  # it notices by itself, without writing
            before = len(ids(tag))
            await until(lambda: len(ids(tag)) >= before + 3)
            assert standby.is_leader
            assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)
    ran = ids(tag)
    assert len(ran) == len(set(ran))
    text = log.read_text()
    late_runs = [
        line
        for line in text.splitlines()
        if "enqueued run" in line
        and (m := _LOG_TIME.match(line))
        and datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") > woke
    ]
    assert late_runs == []


async def test_misfire_once_fires_one_catch_up_and_skip_fires_none(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    once_tag, skip_tag = f"{queue}-once", f"{queue}-skip"
    once = await naq.schedule(
        sched_jobs.record, once_tag, interval=1, queue_name=queue, nats_url=nats_url
    )
    skip = await naq.schedule(
        sched_jobs.record, skip_tag, interval=1, misfire="skip", queue_name=queue, nats_url=nats_url
    )
    assert once.next_run is not None and skip.next_run is not None
    anchor = once.next_run.timestamp() - 1
    # no scheduler for 3.5 s: the runs at +1, +2 and +3 are missed
    await asyncio.sleep(anchor + 3.5 - time.time())
    async with (
        running_worker([queue], nats_url, concurrency=4),
        running_scheduler(nats_url, misfire_grace=0.2),
    ):
        await until(lambda: ids(once_tag), timeout=anchor + 3.95 - time.time())
        await asyncio.sleep(max(0.0, anchor + 3.9 - time.time()))
        assert ids(once_tag) == [run_job_id(once.schedule_id, anchor + 3)]  # one catch-up
        assert ids(skip_tag) == []  # missed runs skipped
        await until(lambda: len(ids(once_tag)) >= 2 and ids(skip_tag), timeout=3)
        assert ids(once_tag)[1] == run_job_id(once.schedule_id, anchor + 4)  # back on time
        assert ids(skip_tag) == [run_job_id(skip.schedule_id, skip.next_run.timestamp() + 3)]
        for s in (once, skip):
            assert await naq.cancel_scheduled_job(s.schedule_id, nats_url=nats_url)


async def test_modify_and_reuse_of_a_schedule_id(nats_url: str, queue: str) -> None:
    sid = f"{queue}-nightly"
    first = await naq.schedule(
        sched_jobs.record,
        "n",
        cron="0 3 * * *",
        schedule_id=sid,
        queue_name=queue,
        nats_url=nats_url,
    )
    again = await naq.schedule(
        sched_jobs.record,
        "n",
        cron="0 3 * * *",
        schedule_id=sid,
        queue_name=queue,
        nats_url=nats_url,
    )
    assert again == first  # same definition: unchanged (safe at every start-up)
    changed = await naq.schedule(
        sched_jobs.record,
        "n",
        cron="0 4 * * *",
        schedule_id=sid,
        queue_name=queue,
        nats_url=nats_url,
    )
    assert changed.cron == "0 4 * * *" and changed.next_run is not None
    assert changed.next_run.hour == 4
    moved = await naq.modify_scheduled_job(
        sid, interval=timedelta(minutes=5), repeat=3, nats_url=nats_url
    )
    assert (moved.cron, moved.interval, moved.repeat) == (None, 300.0, 3)
    when = datetime.now(UTC) + timedelta(hours=2)
    moved = await naq.modify_scheduled_job(sid, next_run=when, misfire="skip", nats_url=nats_url)
    assert moved.next_run == when and moved.misfire == "skip"
    with pytest.raises(naq.ConfigurationError, match="invalid cron"):
        await naq.modify_scheduled_job(sid, cron="nope", nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match="repeat"):
        await naq.modify_scheduled_job(sid, repeat=0, nats_url=nats_url)
    [state] = await naq.list_schedules(queue_name=queue, nats_url=nats_url)
    assert state.interval == 300.0 and state.next_run == when  # the bad calls changed nothing
    assert await naq.cancel_scheduled_job(sid, nats_url=nats_url)
    assert await naq.cancel_scheduled_job(sid, nats_url=nats_url) is False
    with pytest.raises(naq.JobNotFoundError):
        await naq.pause_scheduled_job(sid, nats_url=nats_url)


async def test_scheduler_and_worker_carry_on_after_a_server_restart(
    nats_server: Any, nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-restart"
    async with (
        running_worker([queue], nats_url, concurrency=4),
        running_scheduler(nats_url, lock_ttl=2) as scheduler,
    ):
        sched = await naq.schedule(
            sched_jobs.record, tag, interval=0.3, queue_name=queue, nats_url=nats_url
        )
        await until(lambda: len(ids(tag)) >= 2)
        await naq.close()
        nats_server.restart()
        restarted = time.time()
        before = len(ids(tag))
        await until(lambda: len(ids(tag)) >= before + 3, timeout=15)
        assert scheduler.is_leader
        assert await naq.cancel_scheduled_job(sched.schedule_id, nats_url=nats_url)
    ran = ids(tag)
    assert len(ran) == len(set(ran))
    first_after = min(t for _, t in sched_jobs.runs(tag) if t > restarted)
    assert first_after - restarted < 5
