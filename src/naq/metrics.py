"""Prometheus metrics of a worker: ``naq worker --metrics-port 9100`` (or
``Worker(metrics_port=9100)``) serves ``/metrics`` on ``--metrics-host`` (default
``0.0.0.0``, every interface, as Prometheus exporters do; ``127.0.0.1`` keeps it local).
Needs prometheus-client: ``pip install 'naq[metrics]'``.

Per job (from the worker's hooks, :mod:`naq.hooks`; queue is the job's queue):

* ``naq_jobs_total{queue,outcome}``: runs ended ``completed``, ``failed`` (for good),
  ``retrying`` (failed, runs again), ``cancelled`` (while running, or before it started,
  or expired), and messages refused without running, ``dead``;
* ``naq_job_duration_seconds{queue}``: a histogram of the time each attempt's function ran
  (completed, failed, retrying, cancelled while running), 1 ms to 5 min;
* ``naq_jobs_in_flight{queue}``: functions running now;
* ``naq_retries_total{queue}``: failed attempts that run again;
* ``naq_dead_letters_total{queue}``: jobs kept in the dead-letter stream (failed for good,
  and dead).

Per queue, measured by each worker of the queue at its heartbeat (one ``CONSUMER.INFO`` per
consumer it pulls from: one per queue, plus one per priority in use; one message read more
when jobs wait), the most recent measurement shown:

* ``naq_queue_depth{queue}``: jobs waiting, not delivered yet, every priority;
* ``naq_queue_running{queue}``: jobs delivered and not acknowledged (running, or handed
  back to wait for their retry or a shared limit: ``naq queues`` tells those apart, from
  what the workers report);
* ``naq_queue_oldest_job_age_seconds{queue}``: how long the oldest job not delivered yet
  has been in its queue (since its message was stored), 0 when none waits: the consumer lag.

And ``naq_worker_info{worker_id,hostname,queues,concurrency} 1`` for each running worker.

Several workers on one host with the same port: every worker process writes its metrics to
files of its own (prometheus-client's multiprocess mode), in one directory per port (see
:mod:`naq.metrics_serving`); the first worker that binds the port serves the sum of them
all, the others try again at each heartbeat, so another takes over when the serving one
exits. Counters of workers that exited stay counted; their gauges (in flight, info, queue
measurements) go with them. The multiprocess mode is process-wide: metrics the job
functions create afterwards live in those files too and are served along with naq's;
metrics created before the worker started (in-memory) are not.

Cost: per job a few increments of mmap-backed values (each under prometheus-client's lock,
no system call), on the event loop; nothing per scrape reaches NATS.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from . import constants as c
from .errors import ConfigurationError
from .hooks import JobRun, Middleware, Outcome
from .metrics_serving import (
    MetricsServer,
    clear_if_stale,
    enter_multiprocess_mode,
    forget_dead_processes,
    forget_process,
    metrics_dir,
    prometheus_client,
)
from .transport.consumer_backlog import ConsumerBacklog, consumer_backlog

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from .transport import Connection

#: Where ``/metrics`` listens unless told otherwise: every interface (as exporters do).
DEFAULT_METRICS_HOST = "0.0.0.0"
#: Upper bounds of the duration histogram's buckets, seconds.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
#: The outcomes ``naq_jobs_total`` counts.
_OUTCOMES = (Outcome.COMPLETED, Outcome.FAILED, Outcome.RETRYING, Outcome.CANCELLED, Outcome.DEAD)
#: Outcomes with a duration: the function ran (and ended).
_TIMED = frozenset({Outcome.COMPLETED, Outcome.FAILED, Outcome.RETRYING, Outcome.CANCELLED})


class _Metrics:
    """naq's metric objects: made once per process (in multiprocess mode), for every
    :class:`WorkerMetrics` of it."""

    def __init__(self) -> None:
        client = prometheus_client()
        self.jobs: Counter = client.Counter(
            "naq_jobs", "Jobs by queue and outcome.", ["queue", "outcome"], registry=None
        )
        self.duration: Histogram = client.Histogram(
            "naq_job_duration_seconds",
            "Seconds each attempt's function ran.",
            ["queue"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.in_flight: Gauge = client.Gauge(
            "naq_jobs_in_flight",
            "Job functions running now.",
            ["queue"],
            registry=None,
            multiprocess_mode="livesum",
        )
        self.retries: Counter = client.Counter(
            "naq_retries", "Failed attempts that run again.", ["queue"], registry=None
        )
        self.dead_letters: Counter = client.Counter(
            "naq_dead_letters",
            "Jobs kept in the dead-letter stream (failed for good, or dead).",
            ["queue"],
            registry=None,
        )
        self.depth: Gauge = self._queue_gauge(
            "naq_queue_depth", "Jobs waiting in the queue (not delivered yet), every priority."
        )
        self.running: Gauge = self._queue_gauge(
            "naq_queue_running", "Jobs delivered and not acknowledged (running, or to retry)."
        )
        self.oldest_age: Gauge = self._queue_gauge(
            "naq_queue_oldest_job_age_seconds",
            "Seconds the oldest job not delivered yet has been in the queue (0: none waits).",
        )
        self.worker_info: Gauge = client.Gauge(
            "naq_worker_info",
            "A running worker (always 1).",
            ["worker_id", "hostname", "queues", "concurrency"],
            registry=None,
            multiprocess_mode="livesum",
        )

    @staticmethod
    def _queue_gauge(name: str, documentation: str) -> Gauge:
        gauge: Gauge = prometheus_client().Gauge(
            name, documentation, ["queue"], registry=None, multiprocess_mode="livemostrecent"
        )
        return gauge


class _QueueSeries:
    """The per-job metrics of one queue (labelled once, not per job)."""

    __slots__ = ("dead_letters", "duration", "in_flight", "jobs", "retries")

    def __init__(self, m: _Metrics, queue: str) -> None:
        self.jobs = {outcome: m.jobs.labels(queue, outcome) for outcome in _OUTCOMES}
        self.duration = m.duration.labels(queue)
        self.in_flight = m.in_flight.labels(queue)
        self.retries = m.retries.labels(queue)
        self.dead_letters = m.dead_letters.labels(queue)

    def touch(self) -> None:
        """Write each series at 0 (a series never written is not shown)."""
        for counter in (*self.jobs.values(), self.retries, self.dead_letters):
            counter.inc(0)
        self.in_flight.inc(0)


_process_metrics: _Metrics | None = None


def _metrics() -> _Metrics:
    global _process_metrics  # one set per process, made on first use
    if _process_metrics is None:
        _process_metrics = _Metrics()
    return _process_metrics


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigurationError(f"metrics port must be an integer 1-65535, got {port!r}")
    return port


class WorkerMetrics(Middleware):
    """A worker's Prometheus metrics: its hooks count jobs, :meth:`refresh` (at each
    heartbeat) measures its queues and keeps ``/metrics`` served by some worker."""

    #: instances started and not closed in this process
    _started = 0

    def __init__(self, port: int, host: str = DEFAULT_METRICS_HOST) -> None:
        self.port = _check_port(port)
        if not isinstance(host, str) or not host:
            raise ConfigurationError(f"metrics host must be a host name or address, got {host!r}")
        self.host = host
        prometheus_client()  # installed? (a clear error now, not when the worker starts)
        self.directory = metrics_dir(self.port)
        self.server = MetricsServer(host, self.port, self.directory)
        self._m: _Metrics | None = None
        self._info: tuple[str, ...] | None = None
        self._series: dict[str, _QueueSeries] = {}
        self._failed_refresh = False

    # -- life -------------------------------------------------------------------------------
    def start(self, worker: Any) -> None:
        """Enter multiprocess mode, publish ``worker``'s info and serve the port if it is
        free. A port that cannot be bound for another reason than being in use (a bad host,
        a privileged port) is a :class:`ConfigurationError`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        clear_if_stale(self.directory)
        enter_multiprocess_mode(self.directory)
        m = self._m = _metrics()
        WorkerMetrics._started += 1
        self._info = (
            worker.worker_id,
            socket.gethostname(),
            ",".join(worker.queues),
            str(worker.concurrency),
        )
        m.worker_info.labels(*self._info).set(1)
        for queue in worker.queues:  # every series shown from the start, at 0
            self._of(queue, m).touch()
        self.server.try_serve(first=True)

    async def refresh(self, conn: Connection, levels: Iterable[tuple[str, int]]) -> None:
        """Measure the queues of ``levels`` ((queue, priority) of each consumer the worker
        pulls from), drop the gauges of killed workers, and serve the port if it is free
        now. Never raises: the heartbeat goes on."""
        if self._m is None:
            return
        try:
            forget_dead_processes(self.directory)
            self.server.try_serve()
            await self._measure(conn, list(levels))
            self._failed_refresh = False
        except Exception as exc:  # noqa: BLE001 - metrics never stop a worker
            if not self._failed_refresh:
                logger.warning("could not refresh the queue metrics: {}", exc)
            self._failed_refresh = True

    async def close(self) -> None:
        """Stop serving and remove this process's live gauges (its jobs stay counted)."""
        m, self._m = self._m, None  # from now on the heartbeat leaves the port alone
        if m is None:
            return
        await asyncio.to_thread(self.server.stop)
        WorkerMetrics._started -= 1
        if WorkerMetrics._started == 0:  # the last of this process: its live gauges go
            forget_process(self.directory, os.getpid())
        elif self._info is not None:
            m.worker_info.labels(*self._info).set(0)

    # -- queue gauges -----------------------------------------------------------------------
    async def _measure(self, conn: Connection, levels: list[tuple[str, int]]) -> None:
        m = self._m
        if m is None or not levels:
            return
        found = await asyncio.gather(
            *(
                consumer_backlog(
                    conn,
                    c.JOBS_STREAM,
                    c.consumer_name(queue, priority),
                    c.queue_subject(queue, priority),
                )
                for queue, priority in levels
            )
        )
        by_queue: dict[str, list[ConsumerBacklog]] = {}
        for (queue, _), backlog in zip(levels, found, strict=True):
            entry = by_queue.setdefault(queue, [])
            if backlog is not None:
                entry.append(backlog)
        now = time.time()
        for queue, backlogs in by_queue.items():
            stamps = [b.oldest_waiting_at for b in backlogs if b.oldest_waiting_at is not None]
            m.depth.labels(queue).set(sum(b.waiting for b in backlogs))
            m.running.labels(queue).set(sum(b.running for b in backlogs))
            m.oldest_age.labels(queue).set(max(0.0, now - min(stamps)) if stamps else 0.0)

    # -- hooks ------------------------------------------------------------------------------
    def _of(self, queue: str, m: _Metrics) -> _QueueSeries:
        series = self._series.get(queue)
        if series is None:
            series = self._series[queue] = _QueueSeries(m, queue)
        return series

    def before_job(self, run: JobRun) -> None:
        """One more job running."""
        if self._m is not None:
            self._of(run.queue, self._m).in_flight.inc()
            run.state["naq_metrics"] = True

    def after_job(self, run: JobRun) -> None:
        """Count its outcome and duration; one job fewer running."""
        if self._m is None:
            return
        series = self._of(run.queue, self._m)
        if run.state.pop("naq_metrics", False):
            series.in_flight.dec()
        outcome = run.outcome
        if outcome is None or outcome == Outcome.HANDED_BACK:
            return  # it runs again: nothing ended
        series.jobs[outcome].inc()
        if outcome in _TIMED and run.duration is not None:
            series.duration.observe(run.duration)

    def on_retry(self, run: JobRun) -> None:
        """One retry more."""
        if self._m is not None:
            self._of(run.queue, self._m).retries.inc()

    def on_failure(self, run: JobRun) -> None:
        """Failed for good: one dead letter more."""
        if self._m is not None:
            self._of(run.queue, self._m).dead_letters.inc()

    def on_dead(self, run: JobRun) -> None:
        """Refused without running: one dead job and dead letter more."""
        if self._m is not None:
            series = self._of(run.queue, self._m)
            series.jobs[Outcome.DEAD].inc()
            series.dead_letters.inc()

    def on_cancel(self, run: JobRun) -> None:
        """Cancelled (or expired) before it started."""
        if self._m is not None:
            self._of(run.queue, self._m).jobs[Outcome.CANCELLED].inc()


__all__ = ["DEFAULT_METRICS_HOST", "DURATION_BUCKETS", "WorkerMetrics"]
