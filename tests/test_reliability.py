"""End-to-end reliability: real ``nats-server``, real ``naq worker`` processes, real signals.

These tests prove the invariants users trust (ARCHITECTURE.md 1 and 5): at-least-once with
duplicates bounded to what was in flight at a crash, leases that stop redelivery while a job
runs, crash loops that end in the dead-letter stream without blocking the queue, bounded
graceful shutdown that hands long jobs back at once, worker records that expire, and consumer
configuration that follows the worker's options.

Every job appends ``<tag> <pid>`` to a per-test run-log when it *starts* (see
``tests/crash_jobs.py``), so the log tells how many times each job ran and in which process.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from tests.worker_procs import WorkerProcesses, wait_until

import naq
from naq.server import EmbeddedServer, free_port

ROOT = Path(__file__).resolve().parent.parent
NAQ = [sys.executable, "-m", "naq"]
RECORD = "tests.crash_jobs:record"
CRASH = "tests.crash_jobs:crash"
JOBS_STREAM = "NAQ_JOBS"

T = TypeVar("T")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    """The run-log every job of the test appends ``<tag> <pid>`` to when it starts."""
    return tmp_path / "runs.log"


def runs(log: Path) -> list[tuple[str, int]]:
    """``(tag, pid)`` for every run recorded so far, in order."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        tag, pid = line.split()
        found.append((tag, int(pid)))
    return found


def listed_pids(url: str) -> set[int]:
    return {w.pid for w in naq.list_workers_sync(nats_url=url)}


def wait_listed(url: str, proc: subprocess.Popen[bytes], workers: WorkerProcesses) -> None:
    """Wait until the worker process has written its first heartbeat (it is consuming)."""

    def ready() -> bool:
        assert proc.poll() is None, f"worker exited early:\n{workers.log(proc)}"
        return proc.pid in listed_pids(url)

    wait_until(ready, 30, f"worker {proc.pid} listed", interval=0.05)


def consumer_info(url: str, queue: str) -> Any:
    async def get() -> Any:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            return await nc.jetstream().consumer_info(JOBS_STREAM, f"naq-{queue}")
        finally:
            await nc.close()

    return asyncio.run(get())


# --------------------------------------------------------------------------- 1. kill -9 mid-run


def test_kill_9_mid_run_every_job_completes_duplicates_bounded_by_in_flight(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    n, concurrency = 2000, 20
    done_log = run_log.with_name("done.log")
    calls = [(RECORD, (str(run_log), i, 0.005, str(done_log)), {}) for i in range(n)]
    jobs = naq.enqueue_many_sync(calls, queue_name=queue, nats_url=nats_url)
    assert len({j.job_id for j in jobs}) == n

    first = workers.start(queue, nats_url, "-c", str(concurrency), "--ack-wait", "2")
    wait_until(lambda: len(runs(run_log)) >= 600, 60, "600 jobs started on the first worker")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = len(runs(run_log))
    assert killed_at < n, "the first worker finished everything before the kill"

    second = workers.start(queue, nats_url, "-c", str(concurrency), "--ack-wait", "2")
    with naq.SyncClient(nats_url) as client:
        for i, job in enumerate(jobs):
            assert client.fetch_job_result(job.job_id, timeout=60) == i, workers.all_logs()
            assert client.get_job_status(job.job_id) == naq.JobStatus.COMPLETED

    log = runs(run_log)
    per_tag = Counter(tag for tag, _pid in log)
    assert set(per_tag) == {str(i) for i in range(n)}, "some job never ran"
    duplicated = sorted((t for t, k in per_tag.items() if k > 1), key=int)
    assert all(per_tag[t] == 2 for t in duplicated), per_tag.most_common(5)
    for tag in duplicated:
        pids = [pid for t, pid in log if t == tag]
        # the first run was cut short by the kill, the second is the new worker's
        assert pids == [first.pid, second.pid], (tag, pids)
    finished = {t for t, pid in runs(done_log) if pid == first.pid}
    cut_short = {t for t, pid in log if pid == first.pid} - finished
    print(
        f"\nkilled after {killed_at} starts; {len(cut_short)} running at the kill; "
        f"{len(duplicated)} duplicates; of these ran to the end before the kill: "
        f"{sorted(set(duplicated) & finished, key=int)}"
    )
    # only what the killed worker held (waiting, running or storing its outcome) runs twice
    assert len(duplicated) <= concurrency, (len(duplicated), duplicated)


# --------------------------------------------------------------------------- 2. server restart


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_server_restart_mid_run_loses_nothing(
    tmp_path: Path, queue: str, run_log: Path, workers: WorkerProcesses, kill: bool
) -> None:
    n, outage = 1000, 2.0
    server = EmbeddedServer(port=free_port(), store_dir=tmp_path / "jetstream")
    with server:
        url = server.url
        with naq.SyncClient(url) as client:
            first_half = client.enqueue_many(
                [(RECORD, (str(run_log), i, 0.01), {}) for i in range(n // 2)],
                queue_name=queue,
            )
            worker = workers.start(queue, url, "-c", "10", "--ack-wait", "5")
            wait_until(lambda: len(runs(run_log)) >= 150, 60, "150 jobs started")
            server.stop(kill=kill)
            time.sleep(outage)  # running jobs finish meanwhile and must keep their outcome
            server.start()
            restarted = time.monotonic()
            at_restart = len(runs(run_log))
            # the worker resumes by itself: new starts appear in the run-log
            wait_until(
                lambda: len(runs(run_log)) > at_restart + 20,
                30,
                "worker resumed after the restart\n" + workers.all_logs(),
            )
            resumed = time.monotonic() - restarted
            # the producer's connection reconnected by itself too
            second_half = client.enqueue_many(
                [(RECORD, (str(run_log), i, 0.01), {}) for i in range(n // 2, n)],
                queue_name=queue,
            )
            jobs = first_half + second_half
            # (a short timeout: fetch_job_result sometimes misses the completion push and
            # sits out its whole timeout before it reads the completed record)
            for i, job in enumerate(jobs):
                assert client.fetch_job_result(job.job_id, timeout=15) == i, workers.all_logs()
            assert worker.poll() is None, workers.log(worker)
            per_tag = Counter(tag for tag, _ in runs(run_log))
            assert set(per_tag) == {str(i) for i in range(n)}
            # usually 0.3 s; the pull watchdog (PULL_EXPIRES + 2 s) bounds the worst case
            assert resumed < 15, f"jobs resumed only {resumed:.1f} s after the server came back"
            print(
                f"\njobs resumed {resumed:.2f} s after the server came back; "
                f"{sum(1 for k in per_tag.values() if k > 1)} duplicates"
            )
        workers.kill(worker)


# --------------------------------------------------------------------------- 3. lease held


@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
def test_long_job_with_short_ack_wait_runs_once(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    proc = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "2")
    job = naq.enqueue_sync(RECORD, str(run_log), "long", 10, queue_name=queue, nats_url=nats_url)
    assert naq.fetch_job_result_sync(job.job_id, timeout=30, nats_url=nats_url) == "long"
    assert runs(run_log) == [("long", proc.pid)], "redelivered while its worker held the lease"
    info = naq.get_job_info_sync(job.job_id, nats_url=nats_url)
    assert info.status == naq.JobStatus.COMPLETED
    assert len(info.attempts) == 1
    consumer = consumer_info(nats_url, queue)
    assert consumer.num_redelivered == 0
    assert consumer.num_ack_pending == 0
    assert consumer.config.ack_wait == 2


# --------------------------------------------------------------------------- 4. crash -> rerun


def test_killed_workers_long_job_runs_again_elsewhere_soon(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    first = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "2")
    job = naq.enqueue_sync(RECORD, str(run_log), "long", 60, queue_name=queue, nats_url=nats_url)
    wait_until(lambda: runs(run_log), 30, "the long job started")
    second = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "2")
    wait_listed(nats_url, second, workers)
    time.sleep(2.5)  # past one ack_wait: the lease keeps it on the first worker
    assert runs(run_log) == [("long", first.pid)]

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed = time.monotonic()
    wait_until(lambda: len(runs(run_log)) >= 2, 10, "the job ran again after the kill")
    took = time.monotonic() - killed
    assert runs(run_log) == [("long", first.pid), ("long", second.pid)]
    assert took < 10
    second_id = next(
        w.worker_id for w in naq.list_workers_sync(nats_url=nats_url) if w.pid == second.pid
    )
    info = wait_until(
        lambda: (
            (i := naq.get_job_info_sync(job.job_id, nats_url=nats_url)).worker_id == second_id and i
        ),
        10,
        "the job's record names the second worker",
    )
    assert info.status == naq.JobStatus.RUNNING
    assert [a.attempt for a in info.attempts] == [1, 2]
    print(f"\nre-run {took:.2f} s after the kill (ack_wait 2 s)")


# --------------------------------------------------------------------------- 5. crash loop


def test_crash_loop_goes_to_dead_letters_and_queue_moves_on(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    bad = naq.enqueue_sync(CRASH, str(run_log), "bad", queue_name=queue, nats_url=nats_url)
    good = naq.enqueue_sync(RECORD, str(run_log), "good", queue_name=queue, nats_url=nats_url)

    def crash_loop_letter() -> Any:
        return next(
            (
                d
                for d in naq.list_dead_letters_sync(queue, nats_url=nats_url)
                if d.job_id == bad.job_id
            ),
            None,
        )

    def good_done() -> bool:
        return naq.get_job_status_sync(good.job_id, nats_url=nats_url) == "completed"

    started = 0
    current: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if current is None or current.poll() is not None:
            assert started < 10, f"crash loop never ended:\n{workers.all_logs()}"
            current = workers.start(queue, nats_url, "-c", "1", "--ack-wait", "1")
            started += 1
        if crash_loop_letter() and good_done():
            break
        time.sleep(0.2)
    letter = crash_loop_letter()
    assert letter is not None, workers.all_logs()
    assert letter.kind == "crash_loop"
    assert letter.queue == queue
    assert naq.get_job_status_sync(bad.job_id, nats_url=nats_url) == naq.JobStatus.DEAD
    with pytest.raises(naq.JobExecutionError):
        naq.fetch_job_result_sync(bad.job_id, nats_url=nats_url)
    assert naq.fetch_job_result_sync(good.job_id, timeout=10, nats_url=nats_url) == "good"

    per_tag = Counter(tag for tag, _ in runs(run_log))
    # max_retries (0) + 1 + max_crashes (3): tried 4 times, the 5th delivery is dead-lettered
    assert per_tag["bad"] == 4, per_tag
    assert per_tag["good"] == 1, per_tag
    assert started == 5, started  # four crashes, then one worker that survives
    consumer = consumer_info(nats_url, queue)
    assert consumer.num_pending == 0 and consumer.num_ack_pending == 0


def test_healthy_job_sharing_a_worker_with_a_crashing_job_is_not_dead_lettered(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    # Both start on one worker (-c 2) and die together when the bad one calls os._exit.
    # Redelivered jobs without an outcome run alone, so only the bad one is blamed.
    good = naq.enqueue_sync(RECORD, str(run_log), "good", 1.0, queue_name=queue, nats_url=nats_url)
    bad = naq.enqueue_sync(CRASH, str(run_log), "bad", queue_name=queue, nats_url=nats_url)

    def settled() -> bool:
        statuses = {naq.get_job_status_sync(j.job_id, nats_url=nats_url) for j in (good, bad)}
        return statuses <= {naq.JobStatus.COMPLETED, naq.JobStatus.DEAD} and len(statuses) == 2

    started = 0
    current: subprocess.Popen[bytes] | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not settled():
        if current is None or current.poll() is not None:
            assert started < 12, f"never settled:\n{workers.all_logs()}"
            current = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "1")
            started += 1
        time.sleep(0.2)
    assert naq.get_job_status_sync(bad.job_id, nats_url=nats_url) == naq.JobStatus.DEAD
    assert naq.fetch_job_result_sync(good.job_id, timeout=10, nats_url=nats_url) == "good"
    letters = naq.list_dead_letters_sync(queue, nats_url=nats_url)
    assert [d.job_id for d in letters] == [bad.job_id], letters
    assert letters[0].kind == "crash_loop"


# --------------------------------------------------------------------------- 6. graceful stop


def test_sigterm_finishes_short_job_hands_back_long_one_and_exits_in_time(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    first = workers.start(queue, nats_url, "-c", "4", "--ack-wait", "30", "--shutdown-timeout", "2")
    wait_listed(nats_url, first, workers)
    long = naq.enqueue_sync(RECORD, str(run_log), "long", 30, queue_name=queue, nats_url=nats_url)
    short = naq.enqueue_sync(
        RECORD, str(run_log), "short", 0.5, queue_name=queue, nats_url=nats_url
    )
    wait_until(lambda: len(runs(run_log)) >= 2, 20, "both jobs started")
    # a second worker waits on the (now empty) queue for the job to be handed back
    second = workers.start(queue, nats_url, "-c", "4", "--ack-wait", "30")
    wait_listed(nats_url, second, workers)

    first.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = first.wait(15)
    exited = time.monotonic() - signalled
    assert code == 0, workers.log(first)
    assert exited < 6, f"exit took {exited:.1f} s with --shutdown-timeout 2"
    assert exited >= 1.5, "exited before the shutdown timeout, while the long job still ran"
    assert naq.fetch_job_result_sync(short.job_id, timeout=5, nats_url=nats_url) == "short"

    wait_until(lambda: len(runs(run_log)) >= 3, 5, "the long job ran again on the second worker")
    handed_back = time.monotonic() - signalled
    assert runs(run_log)[2] == ("long", second.pid)
    assert handed_back < 6, f"picked up {handed_back:.1f} s after SIGTERM (ack_wait is 30 s)"
    assert first.pid not in listed_pids(nats_url), "a cleanly stopped worker is still listed"
    assert "Traceback" not in workers.log(first), workers.log(first)
    wait_until(
        lambda: naq.get_job_status_sync(long.job_id, nats_url=nats_url) == "running", 5, "running"
    )
    print(f"\nexit {exited:.2f} s after SIGTERM; long job re-run {handed_back:.2f} s after it")


@pytest.mark.parametrize("second_signal", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_during_graceful_wait_exits_at_once(
    nats_url: str, queue: str, run_log: Path, workers: WorkerProcesses, second_signal: int
) -> None:
    shutdown_timeout = 6
    proc = workers.start(
        queue, nats_url, "-c", "2", "--ack-wait", "30", "--shutdown-timeout", str(shutdown_timeout)
    )
    job = naq.enqueue_sync(RECORD, str(run_log), "long", 30, queue_name=queue, nats_url=nats_url)
    wait_until(lambda: runs(run_log), 20, "the long job started")

    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    assert proc.poll() is None, "exited on the first signal while a job was running"
    proc.send_signal(second_signal)
    code = proc.wait(shutdown_timeout + 15)
    exited = time.monotonic() - signalled
    assert exited < 3, f"exit took {exited:.1f} s although a second signal was sent"
    assert code in (0, 1, 130, -second_signal), workers.log(proc)
    assert proc.pid not in listed_pids(nats_url)

    # handed back (nak), not left to the 30 s lease: a new worker starts it right away
    second = workers.start(queue, nats_url, "-c", "2", "--ack-wait", "30")
    wait_until(lambda: len(runs(run_log)) >= 2, 10, "the job ran again on a new worker")
    assert runs(run_log) == [("long", proc.pid), ("long", second.pid)]
    wait_until(
        lambda: naq.get_job_status_sync(job.job_id, nats_url=nats_url) == "running", 5, "running"
    )


# --------------------------------------------------------------------------- 7. status expiry


def test_killed_workers_record_expires_within_three_heartbeats(
    nats_url: str, queue: str, workers: WorkerProcesses
) -> None:
    proc = workers.start(queue, nats_url, "--heartbeat-interval", "0.5")
    wait_listed(nats_url, proc, workers)
    time.sleep(1.2)  # a couple of heartbeats: the record is being refreshed
    assert proc.pid in listed_pids(nats_url)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed = time.monotonic()
    wait_until(lambda: proc.pid not in listed_pids(nats_url), 5, "killed worker unlisted", 0.1)
    print(f"\nrecord gone {time.monotonic() - killed:.2f} s after SIGKILL (heartbeat 0.5 s)")


# --------------------------------------------------------------------------- 8. reconcile


def test_consumer_ack_wait_follows_the_worker_option(
    nats_url: str, queue: str, workers: WorkerProcesses
) -> None:
    for ack_wait in (5, 2):
        proc = workers.start(queue, nats_url, "--ack-wait", str(ack_wait))
        wait_listed(nats_url, proc, workers)
        assert consumer_info(nats_url, queue).config.ack_wait == ack_wait
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, workers.log(proc)


# --------------------------------------------------------------------------- lease across outage


@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
def test_job_not_run_twice_by_its_own_worker_across_server_outage(
    tmp_path: Path, queue: str, run_log: Path, workers: WorkerProcesses
) -> None:
    server = EmbeddedServer(port=free_port(), store_dir=tmp_path / "jetstream")
    with server:
        proc = workers.start(queue, server.url, "-c", "2", "--ack-wait", "1")
        with naq.SyncClient(server.url) as client:
            job = client.enqueue(RECORD, str(run_log), "long", 6, queue_name=queue)
            wait_until(lambda: runs(run_log), 20, "the long job started")
            time.sleep(0.5)
            server.stop()
            time.sleep(3)
            server.start()
            assert client.fetch_job_result(job.job_id, timeout=30) == "long"
        workers.kill(proc)
    assert runs(run_log) == [("long", proc.pid)], "one worker ran the same job twice at once"
