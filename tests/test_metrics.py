"""Prometheus metrics: ``naq worker --metrics-port P`` serves ``/metrics`` with exactly the jobs
it ran, by queue and outcome; the queue gauges while jobs wait; several worker processes on
one port share one endpoint, and a survivor takes the port over. Real server, real worker
processes, scraped over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests import metric_jobs
from tests.cli_run import naq_cli
from tests.worker_procs import WorkerProcesses, wait_until

import naq
from naq.constants import EVENTS_STREAM
from naq.server import free_port

#: Seconds between the workers' heartbeats (the queue gauges are measured at each).
HEARTBEAT = 0.5

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerProcesses]:
    """Worker processes whose metrics directory (``$TMPDIR/naq-metrics-<port>``) is this
    test's own."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    found = WorkerProcesses(tmp_path)
    try:
        yield found
    finally:
        found.close()


def scrape(port: int) -> Samples | None:
    """Every sample of ``http://127.0.0.1:<port>/metrics`` (None: nobody serves it)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def labels_of(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def start_worker(
    workers: WorkerProcesses, queue: str, url: str, port: int, *options: str
) -> subprocess.Popen[bytes]:
    return workers.start(
        [queue],
        url,
        "--heartbeat-interval",
        str(HEARTBEAT),
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        *options,
    )


def scrape_until(
    port: int, check: Callable[[Samples], bool], what: str, timeout: float = 20
) -> Samples:
    """Scrape until ``check(samples)`` holds."""

    def attempt() -> Samples:
        samples = scrape(port)
        return samples if samples is not None and check(samples) else {}

    return wait_until(attempt, timeout, what, interval=0.1)


async def publish_raw(url: str, subject: str, payload: bytes) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject, payload)
    finally:
        await nc.close()


def test_metrics_count_exactly_the_jobs_of_a_known_mix(
    nats_url: str, queue: str, tmp_path: Path, workers: WorkerProcesses
) -> None:
    port = free_port()
    gate = tmp_path / "gate"
    proc = start_worker(workers, queue, nats_url, port, "-c", "1")
    workers.wait_listed(nats_url, proc)
    n, m, retries = 5, 2, 2
    with naq.SyncClient(nats_url, queue) as client:
        blocker = client.enqueue(metric_jobs.wait_for_file, str(gate))
        scrape_until(
            port,
            lambda s: value(s, "naq_jobs_in_flight", queue=queue) == 1,
            "the blocking job is running",
        )
        # everything below waits behind the blocking job (one slot)
        enqueued_at = time.time()
        ok = [client.enqueue(metric_jobs.ok, i) for i in range(n - 1)]
        ok.append(client.enqueue(metric_jobs.ok, 99, priority=5))
        failing = [
            client.enqueue(metric_jobs.boom, "no", max_retries=retries, retry_delay=0.05)
            for _ in range(m)
        ]
        client.enqueue("os:system", "true")  # not allowed: dead
        asyncio.run(publish_raw(nats_url, f"naq.queue.{queue}", b"\x00 not a job \xff"))  # dead
        cancelled = client.enqueue(metric_jobs.ok, 0)
        assert client.cancel_job(cancelled.job_id)
        # deferred: waits on a job scheduled an hour ahead (neither is in the stream yet)
        later = client.enqueue_in(3600, metric_jobs.ok, 1)
        client.enqueue(metric_jobs.ok, 2, depends_on=later.job_id)
        waiting = n + m + 2 + 1
        time.sleep(1.0)
        samples = scrape_until(
            port,
            lambda s: (
                value(s, "naq_queue_depth", queue=queue) == waiting
                and (value(s, "naq_queue_oldest_job_age_seconds", queue=queue) or 0) >= 1.0
            ),
            "the waiting jobs measured",
        )
        assert value(samples, "naq_queue_running", queue=queue) == 1
        age = value(samples, "naq_queue_oldest_job_age_seconds", queue=queue)
        assert age is not None and age <= time.time() - enqueued_at + 0.5
        assert value(samples, "naq_jobs_in_flight", queue=queue) == 1
        assert value(samples, "naq_jobs_total", queue=queue, outcome="completed") == 0

        gate.touch()
        assert client.fetch_job_result(blocker.job_id, timeout=20) == "opened"
        for job in ok:
            client.fetch_job_result(job.job_id, timeout=20)
        for job in failing:
            with pytest.raises(naq.JobExecutionError):
                client.fetch_job_result(job.job_id, timeout=20)

    def settled(s: Samples) -> bool:
        return (
            value(s, "naq_jobs_total", queue=queue, outcome="dead") == 2
            and value(s, "naq_jobs_total", queue=queue, outcome="cancelled") == 1
            and value(s, "naq_queue_depth", queue=queue) == 0
            and value(s, "naq_queue_running", queue=queue) == 0
        )

    samples = scrape_until(port, settled, "every job counted and the queue measured empty")
    outcomes = {
        "completed": n + 1,
        "failed": m,
        "retrying": m * retries,
        "dead": 2,
        "cancelled": 1,
    }
    for outcome, count in outcomes.items():
        assert value(samples, "naq_jobs_total", queue=queue, outcome=outcome) == count, outcome
    assert value(samples, "naq_retries_total", queue=queue) == m * retries
    assert value(samples, "naq_dead_letters_total", queue=queue) == m + 2
    attempts = (n + 1) + m * (retries + 1)
    assert value(samples, "naq_job_duration_seconds_count", queue=queue) == attempts
    assert value(samples, "naq_job_duration_seconds_bucket", queue=queue, le="+Inf") == attempts
    assert value(samples, "naq_jobs_in_flight", queue=queue) == 0
    assert value(samples, "naq_queue_oldest_job_age_seconds", queue=queue) == 0
    [info] = labels_of(samples, "naq_worker_info")
    [listed] = naq.list_workers_sync(nats_url=nats_url)
    assert info["worker_id"] == listed.worker_id
    assert info["queues"] == queue and info["concurrency"] == "1" and info["hostname"]
    assert value(samples, "naq_worker_info", **info) == 1

    # the listings count the same mix (CLI as a subprocess; totals are up to a heartbeat late)
    expected = {
        "waiting": 0,
        "running": 0,
        "retrying": 0,
        "scheduled": 1,
        "deferred": 1,
        "completed": n + 1,
        "failed": m + 2,  # failed for good, or dead
        "dead": m + 2,  # dead-letter entries: the failed ones and the two dead
        "completed_last_minute": n + 1,
        "failed_last_minute": m + 2,
    }

    def listed() -> dict[str, object]:
        shown = naq_cli("queues", "--json", "-u", nats_url)
        assert shown.code == 0, shown.stderr
        [row] = [q for q in json.loads(shown.stdout) if q["name"] == queue]
        counts = {key: row[key] for key in expected}
        return counts if counts == expected else {}

    wait_until(listed, 10, f"naq queues --json shows {expected}", interval=0.2)


def test_two_workers_share_one_port_and_a_survivor_takes_it_over(
    nats_url: str, queue: str, workers: WorkerProcesses
) -> None:
    port = free_port()
    first_queue, second_queue = f"{queue}-a", f"{queue}-b"
    first = start_worker(workers, first_queue, nats_url, port)
    workers.wait_listed(nats_url, first)
    scrape_until(port, lambda s: len(labels_of(s, "naq_worker_info")) == 1, "first serves")
    second = start_worker(workers, second_queue, nats_url, port)
    workers.wait_listed(nats_url, second)
    with naq.SyncClient(nats_url, first_queue) as client:
        jobs = [client.enqueue(metric_jobs.ok, i) for i in range(3)]
        jobs += [client.enqueue(metric_jobs.ok, i, queue_name=second_queue) for i in range(4)]
        for job in jobs:
            client.fetch_job_result(job.job_id, timeout=20)

        def both(s: Samples) -> bool:
            return (
                value(s, "naq_jobs_total", queue=first_queue, outcome="completed") == 3
                and value(s, "naq_jobs_total", queue=second_queue, outcome="completed") == 4
            )

        samples = scrape_until(port, both, "the jobs of both workers on one endpoint")
        assert len(labels_of(samples, "naq_worker_info")) == 2
        assert second.poll() is None

        first.send_signal(signal.SIGTERM)
        first.wait(20)
        gone = time.monotonic()
        samples = scrape_until(
            port,
            lambda s: [i["queues"] for i in labels_of(s, "naq_worker_info")] == [second_queue],
            "the surviving worker serves the port",
            timeout=10,
        )
        assert time.monotonic() - gone < 4 * HEARTBEAT + 1.0
        # the jobs of the worker that left stay counted
        assert value(samples, "naq_jobs_total", queue=first_queue, outcome="completed") == 3
        more = [client.enqueue(metric_jobs.ok, i, queue_name=second_queue) for i in range(2)]
        for job in more:
            client.fetch_job_result(job.job_id, timeout=20)
    scrape_until(
        port,
        lambda s: value(s, "naq_jobs_total", queue=second_queue, outcome="completed") == 6,
        "the survivor's new jobs",
    )


def test_metrics_without_prometheus_client_is_one_clear_error(
    nats_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = naq_cli(
        "worker",
        queue,
        "--metrics-port",
        str(free_port()),
        "-u",
        nats_url,
        python_code="import sys; sys.modules['prometheus_client'] = None  # as if not installed",
    )
    assert result.code == 1, result
    [line] = result.error_lines
    # the CLI's error line drops "[metrics]" (rich markup) until naq.cli.common escapes it
    assert "metrics need prometheus-client, which is not installed: pip install 'naq" in line
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(naq.ConfigurationError, match=re.escape("pip install 'naq[metrics]'")):
        naq.Worker(queue, nats_url=nats_url, metrics_port=9100)


@pytest.mark.parametrize("port", ["0", "70000"])
def test_a_bad_metrics_port_is_refused(nats_url: str, queue: str, port: str) -> None:
    result = naq_cli("worker", queue, "--metrics-port", port, "-u", nats_url)
    assert result.code == 1, result
    assert "metrics port must be an integer 1-65535" in result.stderr


def test_a_host_it_cannot_listen_on_is_one_clear_error(nats_url: str, queue: str) -> None:
    port = str(free_port())
    # an address of no interface of this host (TEST-NET-1)
    result = naq_cli(
        "worker", queue, "--metrics-port", port, "--metrics-host", "192.0.2.1", "-u", nats_url
    )
    assert result.code == 1, result
    assert "Traceback" not in result.stderr
    assert f"error: cannot serve metrics on 192.0.2.1:{port}" in result.error_lines[-1]


async def _event_subjects(url: str, queue: str) -> dict[str, int]:
    """Messages per subject of ``queue``'s events, read from the stream's state."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(
            EVENTS_STREAM, subjects_filter=f"naq.events.{queue}.>"
        )
    except nats.js.errors.NotFoundError:
        return {}
    finally:
        await nc.close()
    return dict(info.state.subjects or {})


@pytest.mark.parametrize("flag", ["--events", "--no-events"])
def test_worker_events_flag_overrides_naq_events(nats_url: str, queue: str, flag: str) -> None:
    with naq.SyncClient(nats_url, queue) as client:
        client.enqueue(metric_jobs.ok, 21)
    env = {"NAQ_EVENTS": "0" if flag == "--events" else "1"}
    result = naq_cli("worker", queue, "--burst", flag, "-u", nats_url, env=env)
    assert result.code == 0, result
    subjects = asyncio.run(_event_subjects(nats_url, queue))
    if flag == "--events":
        for kind in ("worker_started", "started", "completed", "worker_stopped"):
            assert subjects.get(f"naq.events.{queue}.{kind}") == 1, subjects
    else:
        assert subjects == {}
