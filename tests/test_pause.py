"""Pausing and resuming a queue (``naq queue pause|resume``, ``naq.pause_queue`` & co.): real
server, real worker processes. Paused, no job of the queue starts (of any priority, also on
a worker started later); running jobs finish; resumed, the waiting jobs run at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.msg import Msg
from tests.cli_run import naq_cli
from tests.dep_jobs import step
from tests.worker_procs import WorkerProcesses, wait_until

import naq
import naq.api
import naq.sync
from conftest import raw_nats
from naq import JobStatus
from naq.sync import pause_queue_sync, resume_queue_sync
from naq.transport import ConsumerSettings, streams

#: A job starting later than this after the pause call was delivered after it, seconds.
STOPS_WITHIN = 1.0
#: How long a test watches a paused queue for jobs that should not start, seconds.
WATCH = 2.5


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def _started(job: naq.Job, url: str) -> float | None:
    """When ``job`` started (epoch seconds), ``None`` if it has not."""
    info = naq.get_job_info_sync(job.job_id, nats_url=url)
    return _stamp(info.started_at)


def _stamp(when: datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def _queue_row(name: str, url: str) -> dict[str, object]:
    """The queue's row of ``naq queues --json`` (run as a subprocess)."""
    shown = naq_cli("queues", "--json", "-u", url)
    assert shown.code == 0, shown.stderr
    rows: list[dict[str, object]] = [r for r in json.loads(shown.stdout) if r["name"] == name]
    assert len(rows) == 1, shown.stdout
    return rows[0]


def _consumer_paused(url: str, consumer: str) -> bool:
    async def read() -> bool:
        conn = await naq.api.shared_connection(url)
        counts = await streams.consumer_counts(conn, "NAQ_JOBS", consumer)
        assert counts is not None, f"no consumer {consumer}"
        return counts.paused

    return naq.run_sync(read())


class _Feeder:
    """Enqueues one ``step`` job every ``every`` seconds from a thread until stopped."""

    def __init__(self, queue: str, url: str, every: float, delay: float) -> None:
        self.jobs: list[naq.Job] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(queue, url, every, delay), daemon=True
        )

    def _run(self, queue: str, url: str, every: float, delay: float) -> None:
        while not self._stop.wait(every):
            name = f"fed{len(self.jobs)}"
            self.jobs.append(naq.enqueue_sync(step, name, delay, queue_name=queue, nats_url=url))

    def __enter__(self) -> _Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
def test_pause_stops_new_starts_and_resume_restarts_them(
    nats_url: str, queue: str, workers: WorkerProcesses
) -> None:
    """A worker process busy with a steady stream: after the pause no job starts (later than
    a second after the call), those running finish and complete, the queue is listed as
    paused; after the resume the jobs waited for start at once and all complete."""
    # a long job first: it is surely running when the pause comes
    long = naq.enqueue_sync(step, "long", 2.0, queue_name=queue, nats_url=nats_url)
    backlog = naq.enqueue_many_sync(
        [(step, (f"b{i}", 0.3), {}) for i in range(30)], queue_name=queue, nats_url=nats_url
    )
    proc = workers.start([queue], nats_url, "-c", "3")
    workers.wait_listed(nats_url, proc)
    with _Feeder(queue, nats_url, every=0.1, delay=0.3) as feeder:
        wait_until(
            lambda: naq.get_job_status_sync(backlog[4].job_id, nats_url=nats_url).is_final,
            20,
            "the backlog is being worked through",
        )
        assert naq.get_job_status_sync(long.job_id, nats_url=nats_url) is JobStatus.RUNNING
        paused_at = time.time()
        pause_queue_sync(queue, nats_url=nats_url)
        time.sleep(WATCH)
    assert _queue_row(queue, nats_url)["paused"] is True
    # no job published from here on: nothing but the resume may restart deliveries
    resumed_at = time.time()
    resume_queue_sync(queue, nats_url=nats_url)
    everything = [long, *backlog, *feeder.jobs]
    for job in everything:
        naq.fetch_job_result_sync(job.job_id, timeout=60, nats_url=nats_url)
    infos = [naq.get_job_info_sync(job.job_id, nats_url=nats_url) for job in everything]
    starts = [(_stamp(i.started_at) or 0.0, _stamp(i.finished_at) or 0.0) for i in infos]
    late = [s - paused_at for s, _ in starts if paused_at + STOPS_WITHIN < s < resumed_at]
    assert not late, f"jobs started this long after the pause: {late}\n{workers.all_logs()}"
    # running when paused: finished (and completed: every result above was fetched)
    assert [s for s, f in starts if s < paused_at < f], "no job was running at the pause"
    assert all(i.status is JobStatus.COMPLETED for i in infos)
    after = sorted(s for s, _ in starts if s > resumed_at)
    assert after, "nothing waited through the pause"
    assert after[0] - resumed_at < STOPS_WITHIN, f"first start {after[0] - resumed_at:.2f} s late"
    assert _queue_row(queue, nats_url)["paused"] is False


def test_priority_jobs_wait_too_and_a_restarted_worker_stays_paused(
    nats_url: str, queue: str, workers: WorkerProcesses
) -> None:
    """Priority jobs are paused with their queue: one whose consumer existed before the
    pause (9) and one whose consumer a worker creates while paused (5). A worker restarted
    while paused, with another lease length (its consumer is reconciled), takes nothing."""
    first = workers.start([queue], nats_url, "-c", "4")
    workers.wait_listed(nats_url, first)
    warm = naq.enqueue_sync(step, "warm", priority=9, queue_name=queue, nats_url=nats_url)
    assert naq.fetch_job_result_sync(warm.job_id, timeout=20, nats_url=nats_url) == "warm"

    pause_queue_sync(queue, nats_url=nats_url)
    waiting = [
        naq.enqueue_sync(step, f"p{p}", priority=p, queue_name=queue, nats_url=nats_url)
        for p in (9, 5, 0)
    ]
    time.sleep(WATCH)  # the worker hears of the priority-5 job and creates its consumer
    assert _consumer_paused(nats_url, f"naqp5-{queue}"), workers.all_logs()
    assert [_started(job, nats_url) for job in waiting] == [None, None, None]

    workers.kill(first)
    again = workers.start([queue], nats_url, "-c", "4", "--ack-wait", "17")
    workers.wait_listed(nats_url, again)
    time.sleep(WATCH)
    assert [_started(job, nats_url) for job in waiting] == [None, None, None], workers.all_logs()
    row = _queue_row(queue, nats_url)
    assert row["paused"] is True
    assert row["waiting"] == 3

    resume_queue_sync(queue, nats_url=nats_url)
    for job in waiting:
        naq.fetch_job_result_sync(job.job_id, timeout=20, nats_url=nats_url)
    assert not _consumer_paused(nats_url, f"naqp5-{queue}")


async def test_a_pull_that_waited_through_the_pause_is_served_at_the_resume(
    nats_url: str, queue: str
) -> None:
    """A worker's long poll asked while the queue was paused gets the waiting job as soon as
    the queue resumes. (The server itself looks at such a request again only on its next
    occasion: a new job, a heartbeat of the request, or its expiry, here 30 s away.)"""
    await naq.api.pause_queue(queue, nats_url=nats_url)
    job = await naq.api.enqueue(step, "held", queue_name=queue, nats_url=nats_url)
    async with raw_nats(nats_url) as nc:
        got: asyncio.Queue[Msg] = asyncio.Queue()
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=got.put)
        pull = {"batch": 1, "expires": 30_000_000_000}
        subject = f"$JS.API.CONSUMER.MSG.NEXT.NAQ_JOBS.naq-{queue}"
        await nc.publish(subject, json.dumps(pull).encode(), reply=inbox)
        await asyncio.sleep(0.5)
        assert got.empty(), "a paused queue delivered a job"
        resumed = time.monotonic()
        await naq.api.resume_queue(queue, nats_url=nats_url)
        msg = await asyncio.wait_for(got.get(), 5)
        assert time.monotonic() - resumed < STOPS_WITHIN
        assert job.job_id.encode() in msg.data
        await nc.publish(msg.reply, b"+TERM")  # no worker here: done with it


async def test_a_priority_consumer_created_during_a_pause_or_resume_follows_its_queue(
    nats_url: str, queue: str
) -> None:
    """The race of a worker creating a priority consumer while the queue is paused or
    resumed: the pause changed the queue's own consumer, but looked for priority consumers
    before this one existed. Its creator reads the queue's state again afterwards and
    follows it, both ways."""
    conn = await naq.api.shared_connection(nats_url)
    settings = ConsumerSettings()
    own = await conn.ensure_consumer(queue, settings)
    name = await conn.ensure_consumer(queue, settings, 3)  # created while running
    far = streams.rfc3339(datetime.now(UTC) + timedelta(days=1))

    async def paused(consumer: str) -> bool:
        counts = await streams.consumer_counts(conn, "NAQ_JOBS", consumer)
        assert counts is not None
        return counts.paused

    assert await streams.pause_consumer(conn, "NAQ_JOBS", own, far)  # the pause, half done
    await conn.storage._follow_queue_pause(queue, name, None)
    assert await paused(name)
    assert await streams.pause_consumer(conn, "NAQ_JOBS", own, None) is False  # the resume
    await conn.storage._follow_queue_pause(queue, name, far)
    assert not await paused(name)


def test_pausing_an_unknown_queue_creates_it_paused(
    nats_url: str, queue: str, workers: WorkerProcesses
) -> None:
    """``naq queue pause`` before any worker ran: the queue is listed as paused and a worker
    started afterwards takes nothing until ``naq queue resume``."""
    paused = naq_cli("queue", "pause", queue, "-u", nats_url)
    assert (paused.code, paused.stdout.strip(), paused.stderr) == (0, f"paused queue {queue}", "")
    assert _queue_row(queue, nats_url)["paused"] is True
    again = naq_cli("queue", "pause", queue, "-u", nats_url)  # idempotent
    assert (again.code, again.stdout.strip()) == (0, f"paused queue {queue}")

    job = naq.enqueue_sync(step, "held", queue_name=queue, nats_url=nats_url)
    proc = workers.start([queue], nats_url, "-c", "2")
    workers.wait_listed(nats_url, proc)
    time.sleep(WATCH)
    assert _started(job, nats_url) is None, workers.all_logs()

    resumed_at = time.time()
    resumed = naq_cli("queue", "resume", queue, "-u", nats_url)
    assert (resumed.code, resumed.stdout.strip()) == (0, f"resumed queue {queue}")
    assert naq.fetch_job_result_sync(job.job_id, timeout=20, nats_url=nats_url) == "held"
    started = _started(job, nats_url)
    assert started is not None
    assert started - resumed_at < STOPS_WITHIN + 1.0  # (the command's own start-up included)
    assert _queue_row(queue, nats_url)["paused"] is False
    twice = naq_cli("queue", "resume", queue, "-u", nats_url)  # idempotent
    assert (twice.code, twice.stdout.strip()) == (0, f"resumed queue {queue}")


def test_sync_client_twins_and_queue_methods(nats_url: str, queue: str) -> None:
    """Every surface pauses and resumes, each call idempotent, the listing following."""

    def paused() -> bool:
        return {q.name: q.paused for q in naq.list_queues_sync(nats_url=nats_url)}[queue]

    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        client.pause_queue()
        client.pause_queue(queue)
        assert paused()
        client.resume_queue()
        client.resume_queue(queue)
        assert not paused()

    naq.sync.pause_queue_sync(queue, nats_url=nats_url)
    assert paused()
    naq.sync.resume_queue_sync(queue, nats_url=nats_url)
    assert not paused()

    async def through_queue() -> list[bool]:
        seen = []
        async with naq.Queue(queue, nats_url=nats_url) as q:
            await q.pause()
            seen.append(paused_in(await naq.api.list_queues(nats_url=nats_url)))
            await q.resume()
            seen.append(paused_in(await naq.api.list_queues(nats_url=nats_url)))
        await naq.api.pause_queue(queue, nats_url=nats_url)
        seen.append(paused_in(await naq.api.list_queues(nats_url=nats_url)))
        await naq.api.resume_queue(queue, nats_url=nats_url)
        seen.append(paused_in(await naq.api.list_queues(nats_url=nats_url)))
        return seen

    def paused_in(infos: list[naq.QueueInfo]) -> bool:
        return {i.name: i.paused for i in infos}[queue]

    assert naq.run_sync(through_queue()) == [True, False, True, False]


@pytest.mark.parametrize("bad", ["", "a b", "a.b", "x" * 101, "naq.*"])
def test_bad_queue_names_are_refused_at_the_call(nats_url: str, bad: str) -> None:
    with naq.SyncClient(nats_url=nats_url) as client:
        calls: list[Callable[[], None]] = [
            lambda: naq.sync.pause_queue_sync(bad, nats_url=nats_url),
            lambda: naq.sync.resume_queue_sync(bad, nats_url=nats_url),
            lambda: client.pause_queue(bad),
            lambda: client.resume_queue(bad),
            lambda: naq.run_sync(naq.api.pause_queue(bad, nats_url=nats_url)),
        ]
        for call in calls:
            with pytest.raises(naq.ConfigurationError, match="invalid queue name"):
                call()
    for command in ("pause", "resume"):
        shown = naq_cli("queue", command, bad, "-u", nats_url)
        assert shown.code == 1, shown
        assert len(shown.error_lines) == 1, shown.stderr
        assert "invalid queue name" in shown.stderr
        assert shown.stdout == ""


def test_resuming_a_queue_nobody_knows_is_refused(nats_url: str, queue: str) -> None:
    """A queue never paused and never worked on: most likely a misspelt name."""
    with pytest.raises(naq.ConfigurationError, match=f"no queue '{queue}' to resume"):
        naq.sync.resume_queue_sync(queue, nats_url=nats_url)
    shown = naq_cli("queue", "resume", queue, "-u", nats_url)
    assert shown.code == 1
    assert len(shown.error_lines) == 1, shown.stderr
    assert f"no queue '{queue}' to resume" in shown.stderr
    assert queue not in [q.name for q in naq.list_queues_sync(nats_url=nats_url)]


def test_a_burst_worker_does_not_wait_for_a_paused_queue(nats_url: str, queue: str) -> None:
    """A paused queue has nothing a worker could take: ``--burst`` returns (its jobs stay)."""
    naq.pause_queue_sync(queue, nats_url=nats_url)
    job = naq.enqueue_sync(step, "held", queue_name=queue, nats_url=nats_url)
    burst = naq_cli("worker", queue, "--burst", "-u", nats_url, timeout=30)
    assert burst.code == 0, burst.stderr
    assert naq.get_job_status_sync(job.job_id, nats_url=nats_url) is JobStatus.PENDING
    assert _queue_row(queue, nats_url)["waiting"] == 1
