"""Job signing (``NAQ_SIGNING_KEY``) against a real server and a real worker: what a
signature covers (subject, job id, hook headers, payload), replay protection (a signed job
id runs at most once while its record lives), key rotation, and every way a job is
published still running with signing on."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import jobs, retry_jobs
from tests.conftest import JOBS_STREAM, WAIT, raw_nats, stream_messages, wait_for
from tests.helpers import running_scheduler

import naq
from naq import JobStatus
from naq.deadletter import DeadLetter
from naq.errors import ConfigurationError
from naq.settings import Settings, load_settings

KEY = b"signing-tests-key-number-one"
OLD_KEY = b"signing-tests-key-the-old-one"
OTHER_KEY = b"signing-tests-key-of-a-stranger"


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NAQ_SIGNING_KEY", raising=False)
    yield


def signed(nats_url: str, *keys: bytes) -> Settings:
    """Settings signing with the first of ``keys`` (default :data:`KEY`)."""
    return dataclasses.replace(load_settings(nats_url), signing_keys=keys or (KEY,))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@dataclasses.dataclass(frozen=True)
class Captured:
    """A job message as someone watching the stream saw it."""

    subject: str
    data: bytes
    headers: dict[str, str]


async def captured(nats_url: str, subject: str) -> Captured:
    """The one job message waiting on ``subject`` (no worker has taken it yet)."""
    (msg,) = await stream_messages(nats_url, JOBS_STREAM, subject)
    assert msg.subject is not None and msg.data is not None
    return Captured(msg.subject, msg.data, dict(msg.headers or {}))


async def publish(nats_url: str, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
    """Publish a copy as an attacker would: the headers given, a fresh ``Nats-Msg-Id`` (the
    stream would drop a repeated one, so a real replay changes it)."""
    sent = {k: v for k, v in (headers or {}).items() if k != "Nats-Msg-Id"}
    sent["Nats-Msg-Id"] = uuid.uuid4().hex
    async with raw_nats(nats_url) as nc:
        await nc.jetstream().publish(subject, data, headers=sent)


async def dead_letters(nats_url: str, queue: str, count: int) -> list[DeadLetter]:
    """Wait for ``count`` dead letters of ``queue``; a moment more shows any extra one."""

    async def enough() -> list[DeadLetter] | None:
        found = await naq.list_dead_letters(queue, nats_url=nats_url)
        return found if len(found) >= count else None

    await wait_for(enough)
    await asyncio.sleep(0.3)
    return await naq.list_dead_letters(queue, nats_url=nats_url)


def worker(queues: list[str], nats_url: str, settings: Settings, running_worker: Any) -> Any:
    return running_worker(queues, nats_url, concurrency=4, settings=settings)


# ---------------------------------------------------------------- settings and rotation


def test_signing_key_list_parses_and_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAQ_SIGNING_KEY", " new-key-0123456789 ,old-key-0123456789")
    settings = load_settings()
    assert settings.signing_keys == (b"new-key-0123456789", b"old-key-0123456789")
    assert settings.signing_key == b"new-key-0123456789"  # the first one signs
    assert "key-0123456789" not in repr(settings)
    assert dataclasses.replace(settings).signing_keys == settings.signing_keys


@pytest.mark.parametrize(
    "value", ["new-key-0123456789,", "new-key-0123456789,,old-key-0123456789", "   ", "short"]
)
def test_bad_signing_keys_are_refused_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NAQ_SIGNING_KEY", value)
    with pytest.raises(ConfigurationError, match="NAQ_SIGNING_KEY") as caught:
        load_settings()
    assert "0123456789" not in str(caught.value) and "short" not in str(caught.value)


def test_programmatic_signing_keys_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="signing_keys"):
        Settings(signing_keys=(b"too-short",))
    assert Settings(signing_keys=(KEY, OLD_KEY)).signing_key == KEY
    assert Settings().signing_key is None


async def test_rotation_new_and_old_keys_verify_only_listed_ones_do(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with (
        naq.Queue(queue, settings=signed(nats_url, KEY)) as new_producer,
        naq.Queue(queue, settings=signed(nats_url, OLD_KEY)) as old_producer,
    ):
        async with worker([queue], nats_url, signed(nats_url, KEY, OLD_KEY), running_worker):
            new = await new_producer.enqueue(jobs.count_call, str(runs))
            old = await old_producer.enqueue(jobs.count_call, str(runs))
            await new.result(timeout=WAIT)
            await old.result(timeout=WAIT)
        assert len(lines(runs)) == 2
        async with worker([queue], nats_url, signed(nats_url, KEY), running_worker):
            await old_producer.enqueue(jobs.count_call, str(runs))
            (entry,) = await dead_letters(nats_url, queue, 1)
            newer = await new_producer.enqueue(jobs.count_call, str(runs))
            await newer.result(timeout=WAIT)
    assert entry.kind == "bad_signature"
    assert len(lines(runs)) == 3


# ---------------------------------------------------------------- replays and forgeries


async def test_replay_after_the_job_ran_is_dead_lettered_and_the_record_kept(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    async with naq.Queue(queue, settings=settings) as producer:
        job = await producer.enqueue(jobs.count_call, str(runs))
        msg = await captured(nats_url, f"naq.queue.{queue}")
        async with worker([queue], nats_url, settings, running_worker):
            assert await job.result(timeout=WAIT) == 1
            await publish(nats_url, msg.subject, msg.data, msg.headers)
            (entry,) = await dead_letters(nats_url, queue, 1)
        info = await producer.get_job_info(job.job_id)
        result = await producer.fetch_job_result(job.job_id, timeout=1)
    assert lines(runs) == ["ran"]
    assert entry.kind == "replayed" and job.job_id in entry.reason
    assert entry.job_id is None  # requeueing it cannot reset the job's record
    assert info.status == JobStatus.COMPLETED and result == 1  # the record is untouched


async def test_two_copies_delivered_together_run_once(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    async with naq.Queue(queue, settings=settings) as producer:
        job = await producer.enqueue(jobs.count_call, str(runs))
        msg = await captured(nats_url, f"naq.queue.{queue}")
        for _ in range(3):
            await publish(nats_url, msg.subject, msg.data, msg.headers)
        async with worker([queue], nats_url, settings, running_worker):
            assert await job.result(timeout=WAIT) == 1
            found = await dead_letters(nats_url, queue, 3)
    assert lines(runs) == ["ran"]
    assert [e.kind for e in found] == ["replayed"] * 3


async def test_copy_to_another_queue_is_refused(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs, other = tmp_path / "runs", f"{queue}-other"
    settings = signed(nats_url)
    async with naq.Queue(queue, settings=settings) as producer:
        job = await producer.enqueue(jobs.count_call, str(runs))
        msg = await captured(nats_url, f"naq.queue.{queue}")
        await publish(nats_url, f"naq.queue.{other}", msg.data, msg.headers)
        async with worker([queue, other], nats_url, settings, running_worker):
            assert await job.result(timeout=WAIT) == 1
            (entry,) = await dead_letters(nats_url, other, 1)
    assert lines(runs) == ["ran"]
    assert entry.kind in ("invalid", "bad_signature")


async def test_copy_to_another_priority_is_refused(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    async with naq.Queue(queue, settings=settings) as producer:
        job = await producer.enqueue(jobs.count_call, str(runs))
        msg = await captured(nats_url, f"naq.queue.{queue}")
        await publish(nats_url, f"naq.queue.{queue}.7", msg.data, msg.headers)
        async with worker([queue], nats_url, settings, running_worker):
            assert await job.result(timeout=WAIT) == 1
            (entry,) = await dead_letters(nats_url, queue, 1)
    assert lines(runs) == ["ran"]
    assert entry.kind == "bad_signature"  # the signature covers the subject


@pytest.mark.parametrize(
    "tamper",
    ["one byte of the arguments", "a hook header changed", "a hook header added", "unsigned"],
)
async def test_tampered_copy_is_refused(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path, tamper: str
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    producer = naq.Queue(queue, settings=settings, hooks=naq.Hooks())
    producer.hooks.add("before_enqueue", lambda job: job.headers.update(traceparent="00-a-01"))
    async with producer:
        job = await producer.enqueue(jobs.count_call, str(runs))
        msg = await captured(nats_url, f"naq.queue.{queue}")
        data, headers = msg.data, dict(msg.headers)
        assert headers["traceparent"] == "00-a-01"
        if tamper == "one byte of the arguments":
            data = data.replace(b"/runs", b"/rung")
            assert data != msg.data
        elif tamper == "a hook header changed":
            headers["traceparent"] = "00-b-01"
        elif tamper == "a hook header added":
            headers["X-Extra"] = "1"
        else:
            del headers["Naq-Signature"]
        await publish(nats_url, msg.subject, data, headers)
        async with worker([queue], nats_url, settings, running_worker):
            assert await job.result(timeout=WAIT) == 1
            (entry,) = await dead_letters(nats_url, queue, 1)
    assert lines(runs) == ["ran"] and not (tmp_path / "rung").exists()
    assert entry.kind == "bad_signature"


async def test_job_signed_with_another_key_is_refused(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    async with (
        naq.Queue(queue, settings=signed(nats_url, OTHER_KEY)) as stranger,
        worker([queue], nats_url, signed(nats_url), running_worker),
    ):
        await stranger.enqueue(jobs.count_call, str(runs))
        (entry,) = await dead_letters(nats_url, queue, 1)
    assert lines(runs) == [] and entry.kind == "bad_signature"


# ---------------------------------------------------------------- every path still runs


async def test_retries_still_run_with_signing_on(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    async with (
        naq.Queue(queue, settings=settings) as producer,
        worker([queue], nats_url, settings, running_worker),
    ):
        job = await producer.enqueue(
            retry_jobs.fail_then_succeed, str(runs), 2, "done", max_retries=3, retry_delay=0.1
        )
        assert await job.result(timeout=WAIT) == "done"
    assert len(lines(runs)) == 3


async def test_scheduled_dependent_and_bulk_jobs_run_with_signing_on(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    settings = signed(nats_url)
    async with (
        naq.Queue(queue, settings=settings) as producer,
        worker([queue], nats_url, settings, running_worker),
    ):
        later = await producer.enqueue_in(0.2, jobs.add, 1, 2)
        first = await producer.enqueue(jobs.add, 2, 3)
        second = await producer.enqueue(jobs.add, 3, 4, depends_on=[first.job_id])
        many = await producer.enqueue_many([(jobs.add, (n, n)) for n in range(5)])
        urgent = await producer.enqueue(jobs.add, 5, 5, priority=5)
        assert await later.result(timeout=WAIT) == 3
        assert await first.result(timeout=WAIT) == 5
        assert await second.result(timeout=WAIT) == 7
        assert [await job.result(timeout=WAIT) for job in many] == [0, 2, 4, 6, 8]
        assert await urgent.result(timeout=WAIT) == 10
    assert await naq.list_dead_letters(queue, nats_url=nats_url) == []


async def test_recurring_jobs_run_with_signing_on(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    async with (
        naq.Queue(queue, settings=settings) as producer,
        worker([queue], nats_url, settings, running_worker),
        running_scheduler(nats_url, settings=settings),
    ):
        await producer.schedule(jobs.count_call, str(runs), interval=0.5, repeat=2)

        async def ran_twice() -> bool:
            return len(lines(runs)) >= 2

        await wait_for(ran_twice)
    assert await naq.list_dead_letters(queue, nats_url=nats_url) == []


async def test_requeued_dead_letter_runs_again_with_signing_on(
    nats_url: str, queue: str, running_worker: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    settings = signed(nats_url)
    async with (
        naq.Queue(queue, settings=settings) as producer,
        worker([queue], nats_url, settings, running_worker),
    ):
        job = await producer.enqueue(retry_jobs.fail_then_succeed, str(runs), 1, "second time")
        (entry,) = await dead_letters(nats_url, queue, 1)
        assert entry.kind == "failed"
        assert await naq.requeue_dead_letter(entry.id, nats_url=nats_url) == job.job_id
        assert await job.result(timeout=WAIT) == "second time"
    assert await naq.list_dead_letters(queue, nats_url=nats_url) == []
    assert len(lines(runs)) == 2
