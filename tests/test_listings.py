"""The listings (``list_queues``/``naq queues``, ``list_workers``/``naq list-workers``) against
a real nats-server, ``naq worker`` processes and the CLI run as a subprocess: exact counts
after a known mix of jobs, last-minute rates, the deferred index, uptime, dead workers
vanishing by TTL, and tables that read well in 80 columns."""

from __future__ import annotations

import functools
import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from tests.cli_run import naq_cli
from tests.worker_procs import WorkerProcesses, wait_until

import naq
from conftest import WAIT, wait_for
from naq import constants as c
from naq import stats
from naq.cli.workers_table import workers_table
from naq.errors import JobExecutionError
from naq.info import QueueInfo, WorkerInfo
from naq.models import JobStatus
from naq.settings import load_settings
from naq.transport import Connection, kv, streams

ADD = "tests.jobs:add"
FAIL = "tests.jobs:fail"
#: What a worker refuses to run: dead-lettered without running (a "dead" job).
REFUSED = "os:system"
#: Every column of ``naq queues``, in order.
QUEUE_HEADERS = (
    *("queue", "waiting", "running", "retrying", "scheduled", "deferred", "completed"),
    *("failed", "dead"),
    *("done/min", "fail/min", "workers", "consumers", "paused"),
)
#: Every column of ``naq list-workers``, in order.
WORKER_HEADERS = (
    *("worker id", "host", "pid", "queues", "conc.", "running", "done", "failed", "up"),
    *("heartbeat", "status"),
)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def queue_info(nats_url: str, queue: str) -> QueueInfo | None:
    found = [q for q in await naq.list_queues(nats_url=nats_url) if q.name == queue]
    return found[0] if found else None


def cli_json(*args: str) -> Any:
    proc = naq_cli(*args, "--json")
    assert proc.code == 0, proc.stderr
    assert "\x1b[" not in proc.stdout, proc.stdout  # never colour
    return json.loads(proc.stdout)


async def _has_status(job_id: str, nats_url: str, status: JobStatus) -> bool:
    return await naq.get_job_status(job_id, nats_url=nats_url) is status


async def _settled(job_id: str, nats_url: str) -> bool:
    info = await naq.get_job_info(job_id, nats_url=nats_url)
    return info.status.is_final


# --------------------------------------------------------------------------- a known mix


async def test_queue_counts_and_rates_after_a_known_mix(
    nats_url: str, workers: WorkerProcesses
) -> None:
    queue = _name("mix")
    proc = workers.start(queue, nats_url, "--heartbeat-interval", "0.2", "-c", "4")
    workers.wait_listed(nats_url, proc)
    n, m, k, d, s, r = 4, 2, 1, 3, 2, 2
    # n completed (one at priority 5: the worker sets up a second consumer for it)
    done = [await naq.enqueue(ADD, i, 1, queue_name=queue, nats_url=nats_url) for i in range(n - 1)]
    done.append(await naq.enqueue(ADD, 0, 1, priority=5, queue_name=queue, nats_url=nats_url))
    # m failed for good, k dead (refused: never ran)
    failed = [await naq.enqueue(FAIL, "no", queue_name=queue, nats_url=nats_url) for _ in range(m)]
    dead = [await naq.enqueue(REFUSED, "x", queue_name=queue, nats_url=nats_url) for _ in range(k)]
    # r failed once and wait a minute for their next attempt
    retrying = [
        await naq.enqueue(
            FAIL, "later", max_retries=1, retry_delay=60, queue_name=queue, nats_url=nats_url
        )
        for _ in range(r)
    ]
    # s scheduled an hour ahead; d deferred until the first of them has run
    scheduled = [
        await naq.enqueue_in(3600, ADD, i, 1, queue_name=queue, nats_url=nats_url) for i in range(s)
    ]
    for i in range(d):
        await naq.enqueue(ADD, i, 2, depends_on=scheduled[0], queue_name=queue, nats_url=nats_url)
    for job in done:
        await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    for job in failed:
        with pytest.raises(JobExecutionError):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    for job in dead:
        await wait_for(functools.partial(_settled, job.job_id, nats_url))
    for job in retrying:
        await wait_for(functools.partial(_has_status, job.job_id, nats_url, JobStatus.RETRYING))

    expected = {
        "name": queue,
        "waiting": 0,
        "running": 0,  # the retrying ones are unacknowledged, but not running
        "retrying": r,
        "scheduled": s,
        "deferred": d,
        "completed": n,
        "failed": m + k,  # failed for good or dead
        "dead": m + k,  # both are kept as dead letters
        "completed_last_minute": n,
        "failed_last_minute": m + k,
        "workers": 1,
        "consumers": 2,  # its own, and priority 5's
        "paused": False,
    }

    async def listed() -> dict[str, Any] | None:
        info = await queue_info(nats_url, queue)
        found = {key: getattr(info, key) for key in expected} if info else None
        return found if found == expected else None

    try:
        await wait_for(listed)
    except AssertionError:
        raise AssertionError(f"{await queue_info(nats_url, queue)}\n{workers.all_logs()}") from None

    (entry,) = [q for q in cli_json("queues", "-u", nats_url) if q["name"] == queue]
    assert {key: entry[key] for key in expected} == expected

    snapshot = cli_json("info", "-u", nats_url)
    assert set(snapshot) == {"queues", "workers"}
    (entry,) = [q for q in snapshot["queues"] if q["name"] == queue]
    assert {key: entry[key] for key in expected} == expected
    (worker,) = [w for w in snapshot["workers"] if w["pid"] == proc.pid]
    assert worker["jobs_done"] == n and worker["jobs_failed"] == m + k
    assert 0 < worker["uptime"] < 120


async def test_a_job_waiting_for_a_shared_limit_counts_as_waiting(
    nats_url: str, workers: WorkerProcesses
) -> None:
    queue, limit = _name("limited"), _name("lim")
    await naq.set_limit(limit, concurrency=1, nats_url=nats_url)
    proc = workers.start(queue, nats_url, "--heartbeat-interval", "0.2", "-c", "4")
    workers.wait_listed(nats_url, proc)
    slow = await naq.enqueue(
        "tests.jobs:sleep_sync", 5, limits=[limit], queue_name=queue, nats_url=nats_url
    )
    await wait_for(functools.partial(_has_status, slow.job_id, nats_url, JobStatus.RUNNING))
    held = await naq.enqueue(ADD, 1, 2, limits=[limit], queue_name=queue, nats_url=nats_url)

    async def counted() -> QueueInfo | None:
        info = await queue_info(nats_url, queue)
        ok = info is not None and (info.waiting, info.running, info.retrying) == (1, 1, 0)
        return info if ok else None

    await wait_for(counted)
    assert (await naq.get_job_info(held.job_id, nats_url=nats_url)).waiting_for
    assert await naq.fetch_job_result(held.job_id, timeout=WAIT, nats_url=nats_url) == 3


# --------------------------------------------------------------------------- deferred index


async def _deferred(nats_url: str, queue: str) -> int:
    info = await queue_info(nats_url, queue)
    assert info is not None
    return info.deferred


async def test_deferred_count_follows_release_and_cancel(
    nats_url: str, workers: WorkerProcesses
) -> None:
    queue, parents_queue = _name("dfr"), _name("dfr-parents")
    # the queue gets its consumer (it is listed) but no worker yet: released jobs wait
    created = naq_cli("worker", queue, "--burst", "-u", nats_url)
    assert created.code == 0, created.stderr
    # the parent waits on a queue no worker takes from yet
    parent = await naq.enqueue(ADD, 1, 1, queue_name=parents_queue, nats_url=nats_url)
    children = [
        await naq.enqueue(ADD, i, 1, depends_on=parent, queue_name=queue, nats_url=nats_url)
        for i in range(3)
    ]
    assert await _deferred(nats_url, queue) == 3
    # a child of two parents (the parent, and a child of it): one entry all the same
    both = await naq.enqueue(
        ADD, 0, 0, depends_on=[parent, children[0]], queue_name=queue, nats_url=nats_url
    )
    assert await _deferred(nats_url, queue) == 4

    assert await naq.cancel_job(children[1].job_id, nats_url=nats_url)
    assert await _deferred(nats_url, queue) == 3

    # the same job id enqueued again: the existing job, no second entry
    again = await naq.enqueue(
        ADD, 5, 5, job_id=children[2].job_id, depends_on=parent, queue_name=queue,
        nats_url=nats_url,
    )  # fmt: skip
    assert again.job_id == children[2].job_id
    assert await _deferred(nats_url, queue) == 3

    # the parent runs: two children are released and wait; "both" still waits for one
    workers.wait_listed(nats_url, workers.start(parents_queue, nats_url))

    async def released() -> QueueInfo | None:
        info = await queue_info(nats_url, queue)
        return info if info is not None and info.waiting == 2 else None

    assert (await wait_for(released)).deferred == 1
    # they run, and the last one is released and runs too
    workers.wait_listed(nats_url, workers.start(queue, nats_url))
    for job in (children[0], children[2], both):
        await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
    assert await _deferred(nats_url, queue) == 0
    # a finished job's id enqueued again as a dependant: the finished job, not indexed
    again = await naq.enqueue(
        ADD, 5, 5, job_id=both.job_id, depends_on=parent, queue_name=queue, nats_url=nats_url
    )
    assert (await naq.get_job_info(again.job_id, nats_url=nats_url)).status == "completed"
    assert await _deferred(nats_url, queue) == 0
    # the index is gone for good: no marker is left on its subjects either
    assert await _index_messages(nats_url, queue) == 0


async def _index_messages(nats_url: str, queue: str) -> int:
    """Subjects of ``queue``'s deferred index that hold any message (markers included)."""
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        stream = kv.stream_name(c.RESULTS_BUCKET)
        prefix = kv.subject_prefix(c.RESULTS_BUCKET)
        return len(await streams.subject_counts(conn, stream, f"{prefix}deferred.{queue}.*"))
    finally:
        await conn.close()


async def test_deferred_job_whose_dependency_failed_leaves_the_index(
    nats_url: str, workers: WorkerProcesses
) -> None:
    queue = _name("dfr-fail")
    parent = await naq.enqueue(FAIL, "no", queue_name=queue, nats_url=nats_url)
    child = await naq.enqueue(ADD, 1, 1, depends_on=parent, queue_name=queue, nats_url=nats_url)
    proc = workers.start(queue, nats_url, "--heartbeat-interval", "0.2")
    workers.wait_listed(nats_url, proc)
    await wait_for(lambda: _settled(child.job_id, nats_url))
    assert (await naq.get_job_info(child.job_id, nats_url=nats_url)).status == "cancelled"
    assert await _deferred(nats_url, queue) == 0


# --------------------------------------------------------------------------- rates


async def test_rates_count_only_the_last_minute(nats_url: str) -> None:
    queue = _name("rates")
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        now = time.time()
        slot = stats.slot_of(now)
        # 2 jobs 5 minutes ago (too old to be kept), 3 half a minute ago, 4 now
        recent = {slot - 60: (2, 0), slot - 6: (3, 1), slot: (4, 0)}
        await stats.add(conn, queue, 9, 1, recent=recent)
        totals = (await stats.read_all(conn, now=now))[queue]
        assert (totals.completed, totals.failed) == (9, 1)
        assert (totals.completed_last_minute, totals.failed_last_minute) == (7, 1)
        # 40 s later only the latest slot is within the minute; 2 minutes later none
        later = (await stats.read_all(conn, now=now + 40))[queue]
        assert (later.completed_last_minute, later.failed_last_minute) == (4, 0)
        gone = (await stats.read_all(conn, now=now + 120))[queue]
        assert (gone.completed_last_minute, gone.completed) == (0, 9)
        # the record keeps only the slots of the last ~70 s
        entry = await kv.get(conn, c.STATS_BUCKET, queue)
        assert entry is not None
        kept = json.loads(entry.value)["recent"]
        assert sorted(int(s) for s in kept) == [slot - 6, slot]
    finally:
        await conn.close()


async def test_counts_written_before_rates_existed_still_read(nats_url: str) -> None:
    queue = _name("old")
    conn = await Connection(load_settings(nats_url)).connect()
    try:
        await kv.put(conn, c.STATS_BUCKET, queue, b'{"completed":5,"failed":2}')
        totals = (await stats.read_all(conn))[queue]
        assert (totals.completed, totals.failed, totals.completed_last_minute) == (5, 2, 0)
        await stats.add(conn, queue, 1, 0)
        totals = (await stats.read_all(conn))[queue]
        assert (totals.completed, totals.failed, totals.completed_last_minute) == (6, 2, 1)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- workers


def test_sigkilled_worker_vanishes_within_its_ttl(nats_url: str, workers: WorkerProcesses) -> None:
    queue = _name("ttl")
    # heartbeat 0.5 s: the record's TTL is max(2, 3 heartbeats) = 2 s
    proc = workers.start(queue, nats_url, "--heartbeat-interval", "0.5")
    workers.wait_listed(nats_url, proc)
    (info,) = [w for w in naq.list_workers_sync(nats_url=nats_url) if w.pid == proc.pid]
    assert 0 <= info.uptime < 60
    workers.kill(proc)  # no cleanup of any kind
    killed = time.monotonic()
    # no clean exit removed it: it is still listed for now
    assert proc.pid in {w.pid for w in naq.list_workers_sync(nats_url=nats_url)}

    def gone() -> bool:
        return proc.pid not in {w.pid for w in naq.list_workers_sync(nats_url=nats_url)}

    wait_until(gone, 10, "SIGKILLed worker gone from list_workers", interval=0.1)
    # within its TTL (2 s), plus the last beat's age and the server's expiry sweep
    assert time.monotonic() - killed < 2 + 0.5 + 1.5


#: the moment the sample workers are listed at (fixed: the heartbeat column is relative to it)
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _worker(worker_id: str, queues: list[str], hostname: str = "build-host-01") -> WorkerInfo:
    now = NOW
    return WorkerInfo(
        worker_id=worker_id,
        hostname=hostname,
        pid=123456,
        queues=queues,
        concurrency=10,
        running_jobs=["a", "b", "c"],
        jobs_done=12345,
        jobs_failed=12,
        started_at=now - timedelta(hours=3),
        last_heartbeat=now - timedelta(seconds=1.2),
        status="running",
        uptime=3 * 3600 + 125,
    )


def _printed(table: Any, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def _headers_in_order(line: str, candidates: tuple[str, ...]) -> list[str]:
    """The headers in ``line`` (a table's header line), in the order given."""
    shown = [h for h in candidates if f" {h} " in f" {line} "]
    assert " ".join(shown).split() == line.split(), line  # nothing else, nothing cut
    return shown


def test_workers_table_at_80_and_120_columns() -> None:
    workers = [
        _worker("eighty-columns-1a2b3c4d", ["emails", "cols-1a2b3c4d"]),
        _worker("worker-9f8e7d6c", ["default"]),
    ]
    console = Console(width=80, file=io.StringIO())
    lines = _printed(workers_table(workers, console, now=NOW), 80)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text, text
    header = _headers_in_order(lines[1], WORKER_HEADERS)
    assert header == ["worker id", "queues", "running", "up", "heartbeat", "status"], text
    row = next(line for line in lines if line.startswith("eighty-columns-1a2b3c4d "))
    assert row.split() == [
        *("eighty-columns-1a2b3c4d", "emails,cols-1a2b3c4d", "3", "3h02m", "1.2s", "ago"),
        "busy",
    ], text
    assert "wider terminal for: conc., failed, done, pid, host" in " ".join(text.split())

    console = Console(width=120, file=io.StringIO())
    lines = _printed(workers_table(workers, console, now=NOW), 120)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 120, text
    assert _headers_in_order(lines[1], WORKER_HEADERS) == list(WORKER_HEADERS), text
    row = next(line for line in lines if line.startswith("worker-9f8e7d6c "))
    assert row.split() == [
        *("worker-9f8e7d6c", "build-host-01", "123456", "default", "10", "3", "12345"),
        *("12", "3h02m", "1.2s", "ago", "busy"),
    ], text
    assert "wider terminal" not in text


def test_a_worker_id_too_long_for_the_terminal_folds_and_is_never_cut() -> None:
    long_id = "w" * 70 + "-1a2b3c4d"
    console = Console(width=80, file=io.StringIO())
    lines = _printed(workers_table([_worker(long_id, ["default"])], console, now=NOW), 80)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text, text
    assert long_id in "".join(line.strip().split(" ")[0] for line in lines), text


def _cli_lines(*args: str, width: int) -> list[str]:
    proc = naq_cli(*args, env={"COLUMNS": str(width)})
    assert proc.code == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "…" not in proc.stdout, proc.stdout
    assert max(len(line) for line in lines) <= width, proc.stdout
    return lines


def _caption_left_out(lines: list[str]) -> list[str]:
    text = " ".join(" ".join(lines).split())
    if "wider terminal for: " not in text:
        return []
    names = text.split("wider terminal for: ", 1)[1].split(" waiting by priority")[0]
    return [name.strip() for name in names.split(",")]


def test_listings_read_well_in_80_columns(nats_url: str, workers: WorkerProcesses) -> None:
    queue = _name("cols")
    proc = workers.start(queue, nats_url, "-n", "eighty-columns", "--heartbeat-interval", "0.5")
    workers.wait_listed(nats_url, proc)
    (info,) = [w for w in naq.list_workers_sync(nats_url=nats_url) if w.pid == proc.pid]

    for width in (80, 120):
        lines = _cli_lines("list-workers", "-u", nats_url, width=width)
        row = next(line for line in lines if line.startswith(info.worker_id + " "))
        assert queue in row.split(), lines  # the queue name whole too
        header = _headers_in_order(
            next(line for line in lines if line.startswith("worker id")), WORKER_HEADERS
        )
        # every column is either shown whole or named as left out
        assert sorted(header + _caption_left_out(lines)) == sorted(WORKER_HEADERS), lines
        if width == 120:
            assert header == list(WORKER_HEADERS), lines

        lines = _cli_lines("queues", "-u", nats_url, width=width)
        assert any(line.startswith(queue + " ") for line in lines), lines
        header = _headers_in_order(
            next(line for line in lines if line.startswith("queue ")), QUEUE_HEADERS
        )
        assert sorted(header + _caption_left_out(lines)) == sorted(QUEUE_HEADERS), lines

        lines = _cli_lines("info", "-u", nats_url, width=width)
        assert any(line.startswith(info.worker_id + " ") for line in lines), lines
        assert any(line.startswith(queue + " ") for line in lines), lines
