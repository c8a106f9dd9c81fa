"""One-off scheduled jobs (``enqueue_at``/``enqueue_in``) against a real nats-server: they
fire without any naq scheduler, never early, survive a server restart, and can be cancelled,
paused, resumed and rescheduled. Bad input fails at the call with nothing stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests import sched_jobs

import naq
import naq.api
from conftest import WAIT, raw_nats, stream_count, wait_for
from naq import ConfigurationError, JobStatus
from naq.scheduling.oneoff import count_waiting
from naq.server import EmbeddedServer


def _ran(tag: str) -> list[tuple[str, float]]:
    return sched_jobs.runs(tag)


async def _ran_soon(tag: str, count: int = 1, timeout: float = WAIT) -> list[tuple[str, float]]:
    async def check() -> list[tuple[str, float]] | None:
        found = _ran(tag)
        return found if len(found) >= count else None

    return await wait_for(check, timeout, interval=0.01)


async def _schedule_messages(nats_url: str, queue: str) -> int:
    async with raw_nats(nats_url) as nc:
        info = await nc.jetstream().stream_info(
            "NAQ_SCHEDULES", subjects_filter=f"naq.sched.{queue}.>"
        )
        return sum((info.state.subjects or {}).values())


async def test_enqueue_in_fires_on_time_without_a_scheduler(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-in"
    async with running_worker([queue], nats_url, concurrency=4):
        before = time.time()
        job = await naq.enqueue_in(1, sched_jobs.record, tag, queue_name=queue, nats_url=nats_url)
        due = before + 1
        info = await naq.get_job_info(job.job_id, nats_url=nats_url)
        assert info.status == JobStatus.SCHEDULED
        assert info.schedule_id is None
        assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 0
        await asyncio.sleep(0.8)
        assert _ran(tag) == []  # not before its time
        [(job_id, started)] = await _ran_soon(tag)
    assert job_id == job.job_id
    assert due <= started < due + 1.0
    assert await naq.fetch_job_result(job.job_id, timeout=5, nats_url=nats_url) == job.job_id
    assert await _schedule_messages(nats_url, queue) == 0  # a fired @at schedule is gone


async def test_enqueue_at_naive_is_utc_and_past_runs_at_once(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-past"
    naive_future = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
    later = await naq.enqueue_at(
        naive_future, sched_jobs.record, "never", queue_name=queue, nats_url=nats_url
    )
    conn = await naq.api.shared_connection(nats_url)
    assert await count_waiting(conn, queue) == 1
    [shown] = await naq.list_schedules(queue_name=queue, nats_url=nats_url)
    assert shown.schedule_id == later.job_id and shown.one_off
    assert shown.next_run == naive_future.replace(tzinfo=UTC)
    assert shown.status == "active" and shown.function == "tests.sched_jobs:record"
    async with running_worker([queue], nats_url, concurrency=2):
        start = time.time()
        past = datetime.now(UTC) - timedelta(hours=1)
        job = await naq.enqueue_at(
            past, sched_jobs.arecord, tag, queue_name=queue, nats_url=nats_url
        )
        [(job_id, started)] = await _ran_soon(tag, timeout=5)
    assert job_id == job.job_id
    assert started - start < 1.5  # the server fires a past @at within ~0.25 s
    assert await naq.cancel_scheduled_job(later.job_id, nats_url=nats_url) is True


async def test_cancel_before_due_never_runs(nats_url: str, queue: str, running_worker: Any) -> None:
    tag = f"{queue}-cancel"
    async with running_worker([queue], nats_url, concurrency=2):
        job = await naq.enqueue_in(0.8, sched_jobs.record, tag, queue_name=queue, nats_url=nats_url)
        assert await naq.cancel_scheduled_job(job.job_id, nats_url=nats_url) is True
        await asyncio.sleep(1.5)  # well past the due time
        assert _ran(tag) == []
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.CANCELLED
    with pytest.raises(naq.JobCancelledError):
        await naq.fetch_job_result(job.job_id, nats_url=nats_url)
    assert await naq.cancel_scheduled_job(job.job_id, nats_url=nats_url) is False
    assert await _schedule_messages(nats_url, queue) == 0
    assert await naq.list_schedules(queue_name=queue, nats_url=nats_url) == []


@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
async def test_scheduled_job_survives_a_server_restart(
    nats_server: EmbeddedServer, nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-restart"
    async with running_worker([queue], nats_url, concurrency=2):
        job = await naq.enqueue_in(2, sched_jobs.record, tag, queue_name=queue, nats_url=nats_url)
        due = time.time() + 2
        await naq.close()
        nats_server.restart()  # between scheduling and the due time; the worker reconnects
        # the server resumes sourcing fired schedules into the jobs stream after a restart
        # with a back-off of its own (~8 s here, more on a loaded machine)
        [(job_id, started)] = await _ran_soon(tag, timeout=40)
    assert job_id == job.job_id
    assert started >= due - 0.01


async def test_pause_resume_and_reschedule_a_one_off(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-pause"
    async with running_worker([queue], nats_url, concurrency=2):
        job = await naq.enqueue_in(0.6, sched_jobs.record, tag, queue_name=queue, nats_url=nats_url)
        paused = await naq.pause_scheduled_job(job.job_id, nats_url=nats_url)
        assert paused.status == "paused" and paused.one_off
        await asyncio.sleep(1.2)
        assert _ran(tag) == []  # paused past its due time: nothing ran
        [listed] = await naq.list_schedules(queue_name=queue, nats_url=nats_url)
        assert listed.status == "paused"
        moved = await naq.modify_scheduled_job(
            job.job_id, next_run=timedelta(seconds=0.5), nats_url=nats_url
        )
        assert moved.status == "paused"  # rescheduling keeps it paused
        resumed = await naq.resume_scheduled_job(job.job_id, nats_url=nats_url)
        assert resumed.status == "active"
        start = time.time()
        [(job_id, started)] = await _ran_soon(tag)
        assert job_id == job.job_id
        assert started >= moved.next_run.timestamp() - 0.01 if moved.next_run else False
        assert started - start < 1.5
    with pytest.raises(naq.JobNotFoundError):
        await naq.pause_scheduled_job(job.job_id, nats_url=nats_url)  # already ran
    with pytest.raises(ConfigurationError, match="only next_run"):
        other = await naq.enqueue_in(
            60, sched_jobs.record, "x", queue_name=queue, nats_url=nats_url
        )
        await naq.modify_scheduled_job(other.job_id, cron="* * * * *", nats_url=nats_url)


async def test_same_job_id_scheduled_twice_runs_once(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-dup"
    custom = f"{queue}-the-one"
    async with running_worker([queue], nats_url, concurrency=2):
        first = await naq.enqueue_in(
            0.3, sched_jobs.record, tag, job_id=custom, queue_name=queue, nats_url=nats_url
        )
        second = await naq.enqueue_in(
            0.3, sched_jobs.record, tag, job_id=custom, queue_name=queue, nats_url=nats_url
        )
        assert first.job_id == second.job_id == custom
        await _ran_soon(tag)
        await asyncio.sleep(0.8)
    assert [j for j, _ in _ran(tag)] == [custom]


async def test_job_options_travel_with_a_scheduled_job(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with running_worker([queue], nats_url, concurrency=2):
        job = await naq.enqueue_in(
            timedelta(milliseconds=200),
            sched_jobs.record,
            f"{queue}-opts",
            queue_name=queue,
            nats_url=nats_url,
            max_retries=2,
            result_ttl=60,
            timeout=5,
        )
        assert job.kwargs == {} and job.max_retries == 2
        assert await job.result(timeout=WAIT) == job.job_id
    info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert info.max_retries == 2


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NAQ_SIGNING_KEY", "s3cret-key-of-16+-bytes")
    yield


async def test_signed_scheduled_job_is_accepted_by_a_signing_worker(
    signing_key: None, nats_url: str, queue: str, running_worker: Any
) -> None:
    tag = f"{queue}-signed"
    async with running_worker([queue], nats_url, concurrency=2):
        job = await naq.enqueue_in(0.2, sched_jobs.record, tag, queue_name=queue, nats_url=nats_url)
        assert await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url) == job.job_id


BAD_INPUT = [
    (
        lambda q, u: naq.enqueue_at(
            datetime(3000, 1, 1), sched_jobs.record, "x", queue_name=q, nats_url=u
        ),
        "too far ahead",
    ),
    (
        lambda q, u: naq.enqueue_at(
            datetime(2262, 4, 12, tzinfo=UTC), sched_jobs.record, "x", queue_name=q, nats_url=u
        ),
        "too far ahead",
    ),
    (
        lambda q, u: naq.enqueue_at("tomorrow", sched_jobs.record, "x", queue_name=q, nats_url=u),
        "must be a datetime",
    ),
    (lambda q, u: naq.enqueue_in(-1, sched_jobs.record, "x", queue_name=q, nats_url=u), ">= 0"),
    (
        lambda q, u: naq.enqueue_in(
            timedelta(days=300 * 365), sched_jobs.record, "x", queue_name=q, nats_url=u
        ),
        "too far ahead",
    ),
    (
        lambda q, u: naq.enqueue_in(float("nan"), sched_jobs.record, "x", queue_name=q, nats_url=u),
        ">= 0",
    ),
    (
        lambda q, u: naq.enqueue_in(
            1, sched_jobs.record, "x", depends_on=["a"], queue_name=q, nats_url=u
        ),
        "depends_on: job a not found",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, depends_on=["a"], queue_name=q, nats_url=u
        ),
        "does not take depends_on",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", cron="61 * * * *", queue_name=q, nats_url=u
        ),
        "invalid cron",
    ),
    (
        lambda q, u: naq.schedule(sched_jobs.record, "x", cron="* * * *", queue_name=q, nats_url=u),
        "invalid cron",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", cron="0 0 30 2 *", queue_name=q, nats_url=u
        ),
        "never fires",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record,
            "x",
            cron="* * * * *",
            timezone="Mars/Olympus",
            queue_name=q,
            nats_url=u,
        ),
        "unknown time zone",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record,
            "x",
            cron="* * * * *",
            timezone="+02:00",
            queue_name=q,
            nats_url=u,
        ),
        "unknown time zone",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", cron="* * * * *", interval=5, queue_name=q, nats_url=u
        ),
        "exactly one",
    ),
    (
        lambda q, u: naq.schedule(sched_jobs.record, "x", queue_name=q, nats_url=u),
        "exactly one",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, timezone="UTC", queue_name=q, nats_url=u
        ),
        "cron schedules only",
    ),
    (
        lambda q, u: naq.schedule(sched_jobs.record, "x", interval=0, queue_name=q, nats_url=u),
        "at least",
    ),
    (
        lambda q, u: naq.schedule(sched_jobs.record, "x", interval="5s", queue_name=q, nats_url=u),
        "seconds or a timedelta",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, repeat=0, queue_name=q, nats_url=u
        ),
        "repeat",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, repeat=True, queue_name=q, nats_url=u
        ),
        "repeat",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, misfire="all", queue_name=q, nats_url=u
        ),
        "misfire",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, schedule_id="a b", queue_name=q, nats_url=u
        ),
        "schedule_id",
    ),
    (
        lambda q, u: naq.schedule(
            sched_jobs.record, "x", interval=5, job_id="j", queue_name=q, nats_url=u
        ),
        "schedule_id, not job_id",
    ),
    (lambda q, u: naq.schedule(lambda: 1, interval=5, queue_name=q, nats_url=u), "lambda"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUT, ids=[m for _c, m in BAD_INPUT])
async def test_bad_input_fails_at_the_call_and_stores_nothing(
    nats_url: str, queue: str, call: Any, match: str
) -> None:
    bad_input = (ConfigurationError, naq.SerializationError, naq.JobNotFoundError)
    with pytest.raises(bad_input, match=match):
        await call(queue, nats_url)
    assert await naq.list_schedules(queue_name=queue, nats_url=nats_url) == []
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        try:
            info = await js.stream_info("NAQ_JOBS", subjects_filter=f"naq.*.{queue}.>")
            assert not info.state.subjects
        except Exception as exc:  # noqa: BLE001 - no stream yet: nothing stored either
            assert "not found" in str(exc).lower()
