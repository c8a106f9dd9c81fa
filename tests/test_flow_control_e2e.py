"""Flow control end to end with real ``naq worker`` processes: a rate shared by three
workers, a concurrency-1 key across four, a SIGKILLed holder's slot coming back, a job
waiting on a limit holding no worker slot, and bad input refused at the call with nothing
stored. (An expired job never running on a worker process is in ``test_expiry``.)"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from pathlib import Path

import nats.js.errors
import pytest
from tests.conftest import JOBS_STREAM, raw_nats, stream_count
from tests.limit_jobs import Run, timed, timed_long_once
from tests.limit_jobs import runs as read_runs
from tests.worker_procs import WorkerProcesses

import naq
from naq import JobStatus
from naq.limiting import RENEW_EVERY, SLOT_LEASE

pytestmark = pytest.mark.asyncio

LIMITS_STREAM = "KV_naq_limits"
RESULTS_STREAM = "KV_naq_results"


def _overlapping(runs: list[Run]) -> list[tuple[Run, Run]]:
    """The pairs of consecutive runs (by start) that overlapped in time."""
    ordered = sorted(runs, key=lambda r: r[1])
    return [(a, b) for a, b in itertools.pairwise(ordered) if b[1] < a[2]]


async def _recorded(log: Path, count: int, timeout: float, workers: WorkerProcesses) -> list[Run]:
    """Wait until ``count`` runs are recorded in ``log``; returns them."""
    deadline = time.monotonic() + timeout
    while len(runs := read_runs(log)) < count:
        assert time.monotonic() < deadline, (
            f"{len(runs)} of {count} runs within {timeout} s\n{workers.all_logs()}"
        )
        await asyncio.sleep(0.05)
    return runs


async def _listed(url: str, workers: WorkerProcesses, *procs: subprocess.Popen[bytes]) -> None:
    """Wait until each worker process wrote its first heartbeat (it is consuming)."""
    deadline = time.monotonic() + 30
    while True:
        for proc in procs:
            assert proc.poll() is None, f"worker exited early:\n{workers.log(proc)}"
        pids = {w.pid for w in await naq.list_workers(nats_url=url)}
        if all(proc.pid in pids for proc in procs):
            return
        assert time.monotonic() < deadline, f"workers not listed\n{workers.all_logs()}"
        await asyncio.sleep(0.05)


def _start(
    workers: WorkerProcesses, queue: str, url: str, count: int, *options: str
) -> list[subprocess.Popen[bytes]]:
    return [workers.start(queue, url, *options) for _ in range(count)]


async def test_rate_shared_by_three_worker_processes(
    nats_url: str, queue: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """300 jobs taking a "50/s" limit on 3 workers of 8 slots: over 5 s after a warm-up,
    50 starts a second, within 10 %."""
    log = tmp_path / "runs.log"
    await naq.set_limit("e2e-rate", rate="50/s", nats_url=nats_url)
    procs = _start(workers, queue, nats_url, 3, "-c", "8")
    await _listed(nats_url, workers, *procs)
    async with naq.Queue(queue, nats_url) as q:
        await q.enqueue_many(
            [(timed, (str(log), "r"), {}) for _ in range(300)], limits=["e2e-rate"]
        )
        runs = await _recorded(log, 300, 30, workers)
    starts = sorted(start for _, start, _, _ in runs)
    window_start = starts[0] + 0.5  # past the first burst
    window_end = window_start + 5.0
    assert starts[-1] >= window_end, f"300 starts took {starts[-1] - starts[0]:.2f} s"
    rate = sum(window_start <= s < window_end for s in starts) / 5.0
    assert 45.0 <= rate <= 55.0, f"{rate:.1f} starts/s over 5 s"
    assert {pid for *_, pid in runs} == {p.pid for p in procs}  # every process took its share


async def test_one_key_never_overlaps_across_four_worker_processes(
    nats_url: str, queue: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """40 jobs of ``user:7`` (a ``user:*`` family of concurrency 1) on 4 workers never run
    two at a time, while 40 jobs of ``user:8`` run alongside them."""
    log = tmp_path / "runs.log"
    await naq.set_limit("user:*", concurrency=1, nats_url=nats_url)
    procs = _start(workers, queue, nats_url, 4, "-c", "4")
    await _listed(nats_url, workers, *procs)
    async with naq.Queue(queue, nats_url) as q:
        for _ in range(40):
            for key in ("user:7", "user:8"):
                await q.enqueue(timed, str(log), key, 0.05, limits=[key])
        runs = await _recorded(log, 80, 45, workers)
    for key in ("user:7", "user:8"):
        of_key = [r for r in runs if r[0] == key]
        assert len(of_key) == 40
        overlapping = _overlapping(of_key)
        assert not overlapping, (
            f"{key} ran twice at once {len(overlapping)} times: {overlapping[:3]}"
        )
        assert len({pid for *_, pid in of_key}) > 1  # the key moved between processes
    assert _overlapping(runs), "the two keys never ran alongside each other"


@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
async def test_killed_holders_slot_comes_back_within_its_lease(
    nats_url: str, queue: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """Worker A holds the one slot of ``held`` for a 30 s job and is SIGKILLed: the job
    waiting for the slot starts on worker B once the slot's lease ran out (not before), and
    the killed job is redelivered to B; no two runs of the key overlap."""
    log, marker = tmp_path / "runs.log", tmp_path / "long-started"
    await naq.set_limit("held", concurrency=1, nats_url=nats_url)
    # both with a short lease of their messages (the consumer has one ack wait for all)
    worker_a = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "5", "-n", "wa")
    await _listed(nats_url, workers, worker_a)
    async with naq.Queue(queue, nats_url) as q:
        long = await q.enqueue(
            timed_long_once, str(log), "long", str(marker), 30.0, limits=["held"]
        )
        worker_b = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "5", "-n", "wb")
        deadline = time.monotonic() + 20
        while (info := await q.get_job_info(long.job_id)).status != JobStatus.RUNNING:
            assert time.monotonic() < deadline, f"long job not running\n{workers.all_logs()}"
            await asyncio.sleep(0.05)
        assert info.worker_id is not None and info.worker_id.startswith("wa-")
        await _listed(nats_url, workers, worker_b)
        second = await q.enqueue(timed, str(log), "second", limits=["held"])
        await asyncio.sleep(1.0)
        waiting = await q.get_job_info(second.job_id)
        assert waiting.status == JobStatus.PENDING, workers.all_logs()
        assert waiting.waiting_for is not None and "held" in waiting.waiting_for
        workers.kill(worker_a)
        killed_at = time.time()
        assert await second.result(timeout=SLOT_LEASE + 10) == "second", workers.all_logs()
        assert await long.result(timeout=30) == "long", workers.all_logs()
        redelivered = await q.get_job_info(long.job_id)
    runs = read_runs(log)
    assert {pid for *_, pid in runs} == {worker_b.pid}  # A never finished a run
    assert sorted(key for key, *_ in runs) == ["long", "second"]
    started = next(start for key, start, *_ in runs if key == "second")
    # the dead holder's slot lived on until its lease ran out (renewed every RENEW_EVERY s
    # until the kill), then came back: within the lease plus a check or two
    assert started - killed_at > SLOT_LEASE - RENEW_EVERY - 1.0, started - killed_at
    assert started - killed_at < SLOT_LEASE + 3.0, started - killed_at
    assert not _overlapping(runs), _overlapping(runs)
    assert [(a.worker_id or "")[:3] for a in redelivered.attempts] == ["wa-", "wb-"]


async def test_a_job_waiting_on_a_limit_holds_no_worker_slot(
    nats_url: str, queue: str, workers: WorkerProcesses, tmp_path: Path
) -> None:
    """On a worker of 2 slots, 10 jobs of a concurrency-1 key enqueued before 10 plain jobs:
    the plain ones all finish while the key's jobs still trickle through one at a time, and
    waiting counted no attempt."""
    log = tmp_path / "runs.log"
    await naq.set_limit("k", concurrency=1, nats_url=nats_url)
    async with naq.Queue(queue, nats_url) as q:
        limited = [await q.enqueue(timed, str(log), "k", 0.3, limits=["k"]) for _ in range(10)]
        plain = [await q.enqueue(timed, str(log), "plain", 0.05) for _ in range(10)]
        proc = workers.start(queue, nats_url, "-c", "2")
        runs = await _recorded(log, 20, 40, workers)
        infos = [await q.get_job_info(job.job_id) for job in limited + plain]
    assert all(info.status == JobStatus.COMPLETED for info in infos)
    of_k = sorted((r for r in runs if r[0] == "k"), key=lambda r: r[1])
    last_plain_end = max(end for key, _, end, _ in runs if key == "plain")
    # at least half of the key's jobs had not started when the last plain job ended
    assert last_plain_end < of_k[5][1], (
        f"plain jobs ended {last_plain_end - of_k[0][1]:.2f} s after the first k job; "
        f"k starts: {[round(r[1] - of_k[0][1], 2) for r in of_k]}\n{workers.log(proc)}"
    )
    assert not _overlapping(of_k)
    assert [len(info.attempts) for info in infos[:10]] == [1] * 10


async def _limits_stored(url: str) -> int:
    return await stream_count(url, LIMITS_STREAM)


async def _jobs_stored(url: str, queue: str) -> int:
    """Messages in the jobs stream on any subject of ``queue`` (every priority)."""
    async with raw_nats(url) as nc:
        try:
            info = await nc.jetstream().stream_info(
                JOBS_STREAM, subjects_filter=f"naq.queue.{queue}.>"
            )
        except nats.js.errors.NotFoundError:  # no job was ever stored
            return 0
        on_priorities = sum(int(n) for n in (info.state.subjects or {}).values())
    return on_priorities + await stream_count(url, JOBS_STREAM, f"naq.queue.{queue}")


async def test_bad_input_is_refused_at_the_call_with_nothing_stored(
    nats_url: str, queue: str
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        await naq.list_limits(nats_url=nats_url)  # the limits bucket exists
        before = (
            await _jobs_stored(nats_url, queue),
            await _limits_stored(nats_url),
            await stream_count(nats_url, RESULTS_STREAM),
        )
        for bad_limits in (["a b"], ["user:*"]):
            with pytest.raises(naq.ConfigurationError, match="limit name"):
                await q.enqueue(timed, "/dev/null", "k", limits=bad_limits, job_id="never-a")
            with pytest.raises(naq.ConfigurationError, match="limit name"):
                await q.enqueue_many([(timed, ("/dev/null", "k"), {})], limits=bad_limits)
        with pytest.raises(naq.ConfigurationError, match="priority"):
            await q.enqueue(timed, "/dev/null", "k", priority=10, job_id="never-b")
        for bad_rate in ("100", "0/s", "1/d"):
            with pytest.raises(naq.ConfigurationError, match="rate"):
                await naq.set_limit("never-c", rate=bad_rate, nats_url=nats_url)
        with pytest.raises(naq.ConfigurationError, match="limit name"):
            await naq.set_limit("a b", concurrency=1, nats_url=nats_url)
        for job_id in ("never-a", "never-b"):
            with pytest.raises(naq.JobNotFoundError):
                await q.get_job_info(job_id)
        after = (
            await _jobs_stored(nats_url, queue),
            await _limits_stored(nats_url),
            await stream_count(nats_url, RESULTS_STREAM),
        )
    assert after == before == (0, before[1], before[2])
    names = {spec.name for spec in await naq.list_limits(nats_url=nats_url)}
    assert not names & {"never-c", "a b"}
