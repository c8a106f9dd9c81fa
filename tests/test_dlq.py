"""The dead-letter stream: undecodable, refused, failed and badly signed jobs land there with
their raw bytes and reason; requeue and purge work from the API and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from tests import retry_jobs as rj
from tests.helpers import WAIT, eventually
from tests.helpers import queue_worker as worker

import naq
from naq import JobExecutionError, JobStatus
from naq.deadletter import DeadLetter

ROOT = Path(__file__).resolve().parent.parent


def new_queue(tag: str) -> str:
    return f"dlq-{tag}-{uuid.uuid4().hex[:10]}"


async def warm_up(lookup: Callable[..., Awaitable[Any]], **kwargs: Any) -> None:
    """Make one job lookup through ``lookup`` (the connection then has the results bucket)."""
    with contextlib.suppress(naq.JobNotFoundError):
        await lookup("warm-up-lookup", **kwargs)


async def dead_letters(q: str, url: str, count: int) -> list[DeadLetter]:
    """Wait until ``q`` has at least ``count`` dead letters; returns them all."""

    async def enough() -> list[DeadLetter] | None:
        entries = await naq.list_dead_letters(q, nats_url=url)
        return entries if len(entries) >= count else None

    return await eventually(enough)


async def publish_raw(url: str, subject: str, payload: bytes, headers: dict[str, str]) -> None:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        await nc.jetstream().publish(subject, payload, headers=headers or None)
    finally:
        await nc.close()


# ------------------------------------------------------------------------ what lands there


async def test_undecodable_messages_are_kept_raw_and_the_worker_goes_on(nats_url: str) -> None:
    q = new_queue("garbage")
    garbage = [b"\x00\xff\xfe not json \x80", b'{"hello": "an object, not a job"}']
    async with worker(q, nats_url) as w:
        # a good job first: the worker is up and the jobs stream exists
        first = await naq.enqueue(rj.add, 1, 2, queue_name=q, nats_url=nats_url)
        assert await naq.fetch_job_result(first.job_id, timeout=WAIT, nats_url=nats_url) == 3
        for payload in garbage:
            await publish_raw(nats_url, f"naq.queue.{q}", payload, {})
        after = await naq.enqueue(rj.add, 2, 3, queue_name=q, nats_url=nats_url)
        assert await naq.fetch_job_result(after.job_id, timeout=WAIT, nats_url=nats_url) == 5
        entries = await dead_letters(q, nats_url, len(garbage))
        # and it is still working afterwards
        last = await naq.enqueue(rj.add, 3, 4, queue_name=q, nats_url=nats_url)
        assert await naq.fetch_job_result(last.job_id, timeout=WAIT, nats_url=nats_url) == 7
        assert w.jobs_done == 3

    assert sorted(e.payload for e in entries) == sorted(garbage)
    for entry in entries:
        assert entry.kind == "undecodable"
        assert "decode" in entry.reason
        assert entry.queue == q
        assert entry.job_id is None
        assert entry.failed_at is not None and entry.failed_at.tzinfo is UTC
        assert abs(entry.failed_at.timestamp() - time.time()) < 60
    await naq.close()


async def test_refused_function_is_dead_lettered_and_the_job_is_dead(nats_url: str) -> None:
    q = new_queue("refused")
    job = await naq.enqueue("os:system", "echo pwned", queue_name=q, nats_url=nats_url)
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
        (entry,) = await dead_letters(q, nats_url, 1)

    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.DEAD
    assert entry.kind == "refused"
    assert entry.job_id == job.job_id
    assert "os:system" in entry.reason
    assert b"os:system" in entry.payload
    await naq.close()


async def test_list_queues_counts_dead_letters_and_scheduled_jobs(nats_url: str) -> None:
    q = new_queue("counts")
    job = await naq.enqueue("os:system", "echo pwned", queue_name=q, nats_url=nats_url)
    later = await naq.enqueue_in(3600, rj.echo_kwargs, queue_name=q, nats_url=nats_url)
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
        (info,) = [i for i in await naq.list_queues(nats_url=nats_url) if i.name == q]
        assert (info.dead, info.scheduled, info.workers) == (1, 1, 1)
    assert await naq.cancel_scheduled_job(later.job_id, nats_url=nats_url) is True
    (info,) = [i for i in await naq.list_queues(nats_url=nats_url) if i.name == q]
    assert (info.dead, info.scheduled, info.workers) == (1, 0, 0)
    await naq.close()


# ------------------------------------------------------------------------ requeue and purge


async def test_requeue_runs_the_job_again_under_the_same_id(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("requeue")
    flag, runs = tmp_path / "flag", tmp_path / "runs"
    job = await naq.enqueue(
        rj.needs_flag, str(flag), str(runs), "done", queue_name=q, nats_url=nats_url
    )
    async with worker(q, nats_url):
        with pytest.raises(JobExecutionError, match="flag file is missing"):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
        (entry,) = await dead_letters(q, nats_url, 1)
    assert entry.kind == "failed"
    assert entry.job_id == job.job_id

    flag.touch()
    assert await naq.requeue_dead_letter(entry.id, nats_url=nats_url) == job.job_id
    assert await naq.list_dead_letters(q, nats_url=nats_url) == []
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.PENDING
    async with worker(q, nats_url):
        result = await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    assert result == "done"
    assert rj.lines(runs) == [job.job_id, job.job_id]  # ran again under the same id
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.COMPLETED
    assert await naq.list_dead_letters(q, nats_url=nats_url) == []
    await naq.close()


async def test_requeue_with_a_running_worker_keeps_the_outcome(
    nats_url: str, tmp_path: Path
) -> None:
    q = new_queue("requeue-live")
    flag = tmp_path / "flag"
    logs = [tmp_path / f"runs{n}" for n in range(5)]
    async with worker(q, nats_url):
        jobs = [
            await naq.enqueue(
                rj.needs_flag_async, str(flag), str(log), n, queue_name=q, nats_url=nats_url
            )
            for n, log in enumerate(logs)
        ]
        entries = await dead_letters(q, nats_url, len(jobs))
        flag.touch()
        for entry in entries:
            await naq.close()  # each requeue from a fresh connection, as `naq dlq requeue` does
            await naq.requeue_dead_letter(entry.id, nats_url=nats_url)

        async def all_ran_again() -> bool:
            return all(len(rj.lines(log)) == 2 for log in logs)

        await eventually(all_ran_again)
        # each job ran to completion: its outcome must be the stored one
        results = [
            await naq.fetch_job_result(job.job_id, timeout=1, nats_url=nats_url) for job in jobs
        ]
    assert results == [0, 1, 2, 3, 4]
    await naq.close()


async def test_purge_dead_letters_returns_the_count(nats_url: str) -> None:
    q, other = new_queue("purge"), new_queue("purge-other")
    async with worker(q, nats_url), worker(other, nats_url):
        for n in range(3):
            await naq.enqueue("os:system", f"echo {n}", queue_name=q, nats_url=nats_url)
        await naq.enqueue("os:system", "echo other", queue_name=other, nats_url=nats_url)
        await dead_letters(q, nats_url, 3)
        await dead_letters(other, nats_url, 1)

    assert await naq.purge_dead_letters(q, nats_url=nats_url) == 3
    assert await naq.list_dead_letters(q, nats_url=nats_url) == []
    assert len(await naq.list_dead_letters(other, nats_url=nats_url)) == 1  # other queue kept
    assert await naq.purge_dead_letters(q, nats_url=nats_url) == 0
    await naq.close()


# ------------------------------------------------------------------------ CLI


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "naq", "dlq", *args, "-u", url],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_cli, url, *args)


async def test_dlq_cli_list_show_requeue_purge(nats_url: str, tmp_path: Path) -> None:
    q = new_queue("cli")
    flag, runs = tmp_path / "flag", tmp_path / "runs"
    async with worker(q, nats_url):
        failed = await naq.enqueue(
            rj.needs_flag, str(flag), str(runs), 7, queue_name=q, nats_url=nats_url
        )
        refused = await naq.enqueue("os:system", "echo cli", queue_name=q, nats_url=nats_url)
        await dead_letters(q, nats_url, 2)

        listed = await cli(nats_url, "list", "--queue", q, "--json")
        assert listed.returncode == 0, listed.stderr
        entries = json.loads(listed.stdout)
        assert len(entries) == 2
        for entry in entries:
            assert {"id", "reason", "queue", "job_id", "failed_at", "payload"} <= entry.keys()
            assert entry["queue"] == q
            failed_at = datetime.fromisoformat(entry["failed_at"])  # ISO 8601, in UTC
            assert failed_at.utcoffset() == timedelta(0)
        by_job = {e["job_id"]: e for e in entries}
        assert set(by_job) == {failed.job_id, refused.job_id}
        assert "os:system" in by_job[refused.job_id]["reason"]
        assert failed.job_id in by_job[failed.job_id]["payload"]

        shown = await cli(nats_url, "show", str(by_job[failed.job_id]["id"]), "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == by_job[failed.job_id]

    flag.touch()
    requeued = await cli(nats_url, "requeue", str(by_job[failed.job_id]["id"]))
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued" in requeued.stdout
    assert failed.job_id in requeued.stdout
    async with worker(q, nats_url):
        assert await naq.fetch_job_result(failed.job_id, timeout=WAIT, nats_url=nats_url) == 7
    assert rj.lines(runs) == [failed.job_id, failed.job_id]

    remaining = await naq.list_dead_letters(q, nats_url=nats_url)
    assert [e.job_id for e in remaining] == [refused.job_id]

    refused_purge = await cli(nats_url, "purge", "--queue", q)
    assert refused_purge.returncode != 0
    assert "--force" in refused_purge.stderr
    assert len(await naq.list_dead_letters(q, nats_url=nats_url)) == 1

    purged = await cli(nats_url, "purge", "--queue", q, "--force")
    assert purged.returncode == 0, purged.stderr
    assert "purged 1" in purged.stdout
    assert await naq.list_dead_letters(q, nats_url=nats_url) == []
    await naq.close()


# ------------------------------------------------------------------------ signing


async def test_signed_jobs_run_and_unsigned_ones_are_dead_lettered(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = new_queue("signed")
    runs = tmp_path / "runs"
    monkeypatch.delenv("NAQ_SIGNING_KEY", raising=False)
    unsigned_producer = naq.Queue(q, nats_url=nats_url)  # reads the environment now: no key
    monkeypatch.setenv("NAQ_SIGNING_KEY", "test-secret-key-16+")
    signed_producer = naq.Queue(q, nats_url=nats_url)
    # lookups first, so neither producer's first enqueue races its own pending record
    # (see test_first_enqueue_of_a_fresh_producer_keeps_the_outcome)
    await warm_up(unsigned_producer.get_job_status)
    await warm_up(signed_producer.get_job_status)
    try:
        async with worker(q, nats_url):
            good = await signed_producer.enqueue(rj.record_run, str(runs), "signed")
            assert await good.result(timeout=WAIT) == "signed"
            via_helper = await naq.enqueue(
                rj.record_run, str(runs), "helper", queue_name=q, nats_url=nats_url
            )
            assert await via_helper.result(timeout=WAIT) == "helper"

            bad = await unsigned_producer.enqueue(rj.record_run, str(runs), "unsigned")
            (entry,) = await dead_letters(q, nats_url, 1)
    finally:
        await unsigned_producer.close()
        await signed_producer.close()

    assert rj.lines(runs) == ["run", "run"]  # the unsigned job never ran
    assert entry.kind == "bad_signature"
    # an unsigned message is not trusted with any job's state: its id is only named in the
    # reason, and the record its producer wrote is left as it was
    assert entry.job_id is None
    assert "signature" in entry.reason and bad.job_id in entry.reason
    assert await naq.get_job_status(bad.job_id, nats_url=nats_url) == JobStatus.PENDING
    await naq.close()


async def test_job_signed_with_another_key_is_dead_lettered(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = new_queue("wrongkey")
    runs = tmp_path / "runs"
    monkeypatch.setenv("NAQ_SIGNING_KEY", "the-wrong-key-16+bytes")
    wrong = naq.Queue(q, nats_url=nats_url)
    monkeypatch.setenv("NAQ_SIGNING_KEY", "the-right-key-16+bytes")
    try:
        async with worker(q, nats_url):
            bad = await wrong.enqueue(rj.record_run, str(runs), "wrong")
            (entry,) = await dead_letters(q, nats_url, 1)
    finally:
        await wrong.close()
    assert rj.lines(runs) == []
    assert entry.kind == "bad_signature"
    assert entry.job_id is None and bad.job_id in entry.reason  # untrusted: named only
    await naq.close()


async def test_first_enqueue_of_a_fresh_producer_keeps_the_outcome(nats_url: str) -> None:
    q = new_queue("fresh")
    jobs = []
    async with worker(q, nats_url, concurrency=10):
        warm = await naq.enqueue(rj.add, 0, 0, queue_name=q, nats_url=nats_url)
        assert await naq.fetch_job_result(warm.job_id, timeout=WAIT, nats_url=nats_url) == 0
        for n in range(10):
            async with naq.Queue(q, nats_url=nats_url) as producer:  # a new connection each
                jobs.append(await producer.enqueue(rj.async_add, n, 1))

        async def all_completed() -> bool:
            statuses = [await naq.get_job_status(job.job_id, nats_url=nats_url) for job in jobs]
            return all(s == JobStatus.COMPLETED for s in statuses)

        await eventually(all_completed, timeout=3)
    await naq.close()


async def test_a_dead_letter_that_would_exceed_max_payload_is_cut_and_kept(
    nats_url: str,
) -> None:
    """The original message fits the server's max_payload, but a dead letter adds naq's
    headers: its payload is cut (its size recorded) instead of the worker's connection being
    closed by the server."""
    q = new_queue("oversize-dlq")
    nc = await nats.connect(nats_url)
    try:
        size = nc.max_payload - 64
        async with worker(q, nats_url) as w:
            first = await naq.enqueue(rj.async_add, 1, 1, queue_name=q, nats_url=nats_url)
            assert await first.result(timeout=WAIT) == 2  # the worker is up
            await nc.jetstream().publish(f"naq.queue.{q}", b"\xff" * size)
            (entry,) = await dead_letters(q, nats_url, 1)
            assert w._conn is not None and w._conn.is_connected and w._conn.reconnects == 0
            later = await naq.enqueue(rj.async_add, 1, 2, queue_name=q, nats_url=nats_url)
            assert await later.result(timeout=WAIT) == 3
    finally:
        await nc.close()
    assert entry.kind == "undecodable"
    assert entry.headers.get("Naq-Dlq-Truncated") == str(size)
    assert 0 < len(entry.payload) < size


async def test_requeue_every_dead_letter_of_a_queue_at_once(nats_url: str, tmp_path: Path) -> None:
    q, other = new_queue("bulk"), new_queue("bulk-other")
    flag = tmp_path / "flag"
    logs = [tmp_path / f"runs{n}" for n in range(3)]
    async with worker(q, nats_url), worker(other, nats_url):
        jobs = [
            await naq.enqueue(
                rj.needs_flag, str(flag), str(log), n, queue_name=q, nats_url=nats_url
            )
            for n, log in enumerate(logs)
        ]
        stays = await naq.enqueue(
            rj.needs_flag,
            str(flag),
            str(tmp_path / "other"),
            9,
            queue_name=other,
            nats_url=nats_url,
        )
        await dead_letters(q, nats_url, 3)
        await dead_letters(other, nats_url, 1)
        flag.touch()
        outcome = await naq.requeue_dead_letters(q, nats_url=nats_url)
        assert sorted(job_id for _, job_id in outcome.requeued) == sorted(j.job_id for j in jobs)
        assert outcome.skipped == []
        for n, job in enumerate(jobs):
            assert await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url) == n
    assert await naq.list_dead_letters(q, nats_url=nats_url) == []
    assert [e.job_id for e in await naq.list_dead_letters(other, nats_url=nats_url)] == [
        stays.job_id
    ]


@pytest.mark.parametrize("bad", ["abc", "1", True, 0, -1, 1.9, None])
async def test_a_dead_letter_id_that_is_not_a_positive_int_is_refused(
    nats_url: str, bad: object
) -> None:
    # True and 1.9 used to mean entry 1, "abc" raised a bare ValueError
    with pytest.raises(naq.ConfigurationError, match="dead letter id"):
        await naq.requeue_dead_letter(bad, nats_url=nats_url)  # type: ignore[arg-type]
