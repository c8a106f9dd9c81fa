"""Failover on a 3-node JetStream cluster (``NAQ_REPLICAS=3``): two worker processes run
5,000 jobs while the node leading the jobs stream, or the results bucket, is SIGKILLed; and
a producer goes on enqueueing through such a kill. Every job must complete, none is lost;
duplicate runs (at-least-once: a run whose ack was lost with the node) are counted and
printed, with the write stall (the longest gap between runs or between confirmed enqueues).

Run with ``pytest -s -m cluster tests/test_cluster_failover.py`` to see the numbers; they
are also appended to ``benchmarks/results/cluster_failover.txt`` (not tracked: the measured
numbers of record are in ``docs/design.md``, section Cluster).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cluster_jobs import RUNS_DIR_VARIABLE, read_runs

import naq
from cli_run import ROOT
from helpers import queue_worker
from naq.cluster import NatsCluster
from naq.constants import JOBS_STREAM, RESULTS_BUCKET
from naq.settings import Settings, load_settings

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

JOBS = 5000
#: Generous bound for one run (5,000 jobs, a leader election, lease expiries).
RUN_TIMEOUT = 120.0
#: 20 jobs at once each; a lease of 5 s: a job whose ack died with a node runs again soon
WORKER_OPTIONS = ("-c", "20", "--ack-wait", "5")
RESULTS_FILE = ROOT / "benchmarks" / "results" / "cluster_failover.txt"


def replicated(url: str) -> Settings:
    return dataclasses.replace(load_settings(url), replicas=3)


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with NatsCluster(3) as found:
        yield found


class Workers:
    """``naq worker`` processes with ``NAQ_REPLICAS=3`` recording their runs in a dir."""

    def __init__(self, tmp_path: Path) -> None:
        self.runs_dir = tmp_path / "runs"
        self.runs_dir.mkdir()
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queue: str, url: str, count: int = 2) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
        env.update({"NAQ_REPLICAS": "3", RUNS_DIR_VARIABLE: str(self.runs_dir)})
        for n in range(count):
            with (self.tmp_path / f"worker-{n}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "naq", "worker", queue, "-u", url, *WORKER_OPTIONS],
                        cwd=ROOT,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp_path.glob("worker-*.log"))
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    found = Workers(tmp_path)
    try:
        yield found
    finally:
        found.close()


def longest_gap(times: list[float]) -> float:
    ordered = sorted(times)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


def report(case: str, text: str) -> None:
    line = f"{case}: {text}"
    print(line)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS_FILE.open("a") as out:
        out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


async def wait_all_ran(workers: Workers, numbers: int, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = {number for number, _ in read_runs(workers.runs_dir)}
        if len(seen) >= numbers:
            return
        for proc in workers.procs:
            assert proc.poll() is None, f"a worker exited:\n{workers.logs()}"
        if time.monotonic() > deadline:
            missing = sorted(set(range(numbers)) - seen)
            raise AssertionError(
                f"{len(missing)} jobs never ran (e.g. {missing[:10]}):\n{workers.logs()}"
            )
        await asyncio.sleep(0.2)


async def wait_runs(workers: Workers, count: int) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(read_runs(workers.runs_dir)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} runs:\n{workers.logs()}"
        await asyncio.sleep(0.05)


async def check_outcome(
    case: str, q: naq.Queue, jobs: list[naq.Job], workers: Workers, stall: float
) -> None:
    """Every job ran and has its final record; count duplicates; report the stall."""
    await wait_all_ran(workers, len(jobs))
    deadline = time.monotonic() + RUN_TIMEOUT
    pending = list(jobs)
    while pending:  # the final record of every job (written after its run)
        unfinished = []
        for start in range(0, len(pending), 200):
            part = pending[start : start + 200]
            statuses = await asyncio.gather(
                *(q.get_job_status(job.job_id) for job in part), return_exceptions=True
            )
            unfinished += [  # a read cut off by the kill is read again
                job
                for job, status in zip(part, statuses, strict=True)
                if status != naq.JobStatus.COMPLETED
            ]
        pending = unfinished
        assert time.monotonic() < deadline, f"{len(pending)} jobs without a final record"
        if pending:
            await asyncio.sleep(0.5)
    runs = read_runs(workers.runs_dir)
    counts = collections.Counter(number for number, _ in runs)
    assert set(counts) == set(range(len(jobs)))
    duplicates = sum(n - 1 for n in counts.values())
    report(
        case,
        f"{len(jobs)} jobs, all completed, {duplicates} duplicate runs, write stall {stall:.2f} s",
    )
    # at-least-once: a duplicate is a run whose ack died with the node; a handful at most
    assert duplicates <= 200, f"{duplicates} duplicate runs"


async def enqueue_all(q: naq.Queue) -> list[naq.Job]:
    return await q.enqueue_many([("tests.cluster_jobs:record", (n,), {}) for n in range(JOBS)])


async def kill_leader_while_working(
    cluster: NatsCluster, workers: Workers, queue: str, stream: str, case: str
) -> None:
    async with naq.Queue(queue, settings=replicated(cluster.url)) as q:
        started = time.monotonic()
        jobs = await enqueue_all(q)
        enqueued = time.monotonic()
        workers.start(queue, cluster.url)
        await wait_runs(workers, 1000)
        leader = cluster.stream_leader(stream)
        assert leader is not None
        cluster.kill(leader)
        killed = time.monotonic()
        await wait_all_ran(workers, len(jobs))
        report(
            case,
            f"enqueue {enqueued - started:.1f} s, 1000 runs after {killed - enqueued:.1f} s, "
            f"all ran {time.monotonic() - killed:.1f} s after the kill of node {leader}",
        )
        stall = longest_gap([at for _, at in read_runs(workers.runs_dir)])
        await check_outcome(case, q, jobs, workers, stall)


async def test_sigkill_of_the_jobs_stream_leader_loses_nothing(
    cluster: NatsCluster, workers: Workers, queue: str
) -> None:
    await kill_leader_while_working(cluster, workers, queue, JOBS_STREAM, "jobs stream leader")


async def test_sigkill_of_the_results_bucket_leader_loses_nothing(
    cluster: NatsCluster, workers: Workers, queue: str
) -> None:
    await kill_leader_while_working(
        cluster, workers, queue, f"KV_{RESULTS_BUCKET}", "results bucket leader"
    )


async def test_a_producer_goes_on_through_a_sigkill_of_the_jobs_stream_leader(
    cluster: NatsCluster, workers: Workers, queue: str
) -> None:
    """``enqueue_many`` in chunks of 500 and single enqueues, the jobs stream's leader
    killed after the third chunk: every call succeeds, and every job runs."""
    async with naq.Queue(queue, settings=replicated(cluster.url)) as q:
        await q.enqueue("tests.jobs:add", 0, 0)  # storage set up, then the workers
        workers.start(queue, cluster.url)
        jobs: list[naq.Job] = []
        confirmed: list[float] = []
        number = 0
        chunk = 500
        while number < JOBS:
            if number == 3 * chunk:
                leader = cluster.stream_leader(JOBS_STREAM)
                assert leader is not None
                cluster.kill(leader)
            calls = [
                ("tests.cluster_jobs:record", (n,), {}) for n in range(number, number + chunk - 10)
            ]
            jobs += await q.enqueue_many(calls)
            confirmed.append(time.monotonic())
            for n in range(number + chunk - 10, number + chunk):
                jobs.append(await q.enqueue("tests.cluster_jobs:record", n))
                confirmed.append(time.monotonic())
            number += chunk
        stall = longest_gap(confirmed)
        await check_outcome("producer through jobs leader kill", q, jobs, workers, stall)


async def test_enqueue_waits_out_a_stream_without_leader(cluster: NatsCluster, queue: str) -> None:
    """With two of three nodes down the jobs stream has no leader ("no responders"): an
    enqueue is re-sent with the same id until a node is back, and then succeeds once."""
    settings = replicated(cluster.url)
    async with naq.Queue(queue, settings=settings) as q:
        await q.enqueue("tests.jobs:add", 0, 0)  # storage set up
        survivor = cluster.stream_leader(JOBS_STREAM) or 1
        others = [n for n in (1, 2, 3) if n != survivor]
        for number in others:
            cluster.kill(number)
        await asyncio.sleep(0.5)

        async def bring_back() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster.restart, others[0])

        started = time.monotonic()
        back = asyncio.create_task(bring_back())
        jobs = await q.enqueue_many([("tests.jobs:add", (n, n), {}) for n in range(50)])
        job = await q.enqueue("tests.jobs:add", 7, 7)
        await back
        assert time.monotonic() - started >= 1.5  # it really waited for the node
        async with queue_worker(queue, cluster.url, settings=settings):
            for n, found in enumerate(jobs):
                assert await q.fetch_job_result(found.job_id, timeout=60) == 2 * n
            assert await q.fetch_job_result(job.job_id, timeout=60) == 14


def test_enqueue_sync_waits_out_a_stream_without_leader(
    cluster: NatsCluster, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocking ``enqueue_sync`` path: re-sent with the same id until a node is back."""
    monkeypatch.setenv("NAQ_REPLICAS", "3")
    first = naq.enqueue_sync("tests.jobs:add", 0, 0, queue_name=queue, nats_url=cluster.url)
    survivor = cluster.stream_leader(JOBS_STREAM) or 1
    others = [n for n in (1, 2, 3) if n != survivor]
    for number in others:
        cluster.kill(number)
    time.sleep(0.5)
    back = threading.Timer(1.5, cluster.restart, args=(others[0],))
    started = time.monotonic()
    back.start()
    try:
        job = naq.enqueue_sync("tests.jobs:add", 4, 4, queue_name=queue, nats_url=cluster.url)
    finally:
        back.join()
    assert time.monotonic() - started >= 1.5
    assert job.job_id != first.job_id
    found = naq.get_job_status_sync(job.job_id, nats_url=cluster.url)
    assert found == naq.JobStatus.PENDING
