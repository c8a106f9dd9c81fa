"""The :class:`Worker`: pulls jobs from its queues and runs them, keeping every invariant:
ack only after the outcome is stored, leases renewed while a job runs, dead letters for
anything that cannot run, and a graceful, bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from loguru import logger

from .. import constants as c
from .. import eventloop
from ..deadletter import DeadLetters
from ..dependencies import UNPIN_DELAY, Dependencies
from ..errors import ConfigurationError, NaqConnectionError
from ..events import EventPublisher, WorkerEvents
from ..functions import FunctionResolver, add_module_paths
from ..hooks import HookRunner, Hooks, JobRun, as_hooks, cancelled_run, global_hooks
from ..limiting import Limiter
from ..limits import LimitBook
from ..metrics import DEFAULT_METRICS_HOST, WorkerMetrics
from ..models import JobRecord
from ..results import ResultStore, record_subject
from ..serialization import warn_if_pickle
from ..settings import Settings, load_settings, validate_queue_name
from ..signals import install_stop_handlers, remove_stop_handlers
from ..transport import (
    Connection,
    ConsumerSettings,
    Message,
    delivery_info,
    nak_body,
)
from .backlog import Backlog
from .cancels import CancelRequests
from .counters import Counters
from .delayed import DelayedCalls
from .delivery import Delivery, State
from .executor import Executor
from .handback import hand_back
from .holds import HeldBack
from .levels import PriorityLevels
from .loops import Loops, renew_lease
from .options import check_options, new_worker_id, refuse_original_options
from .outcomes import Records
from .pipeline import RUNNING_WRITE_DELAY, JobPipeline, Parts
from .progress import ProgressReports
from .puller import Puller
from .status import WorkerStatus
from .writes import with_retries


class Worker:
    """Runs jobs from one or more queues.

    ``concurrency`` jobs run at once: coroutine functions on the event loop, plain functions
    on a pool of as many threads. ``burst=True`` returns once the queues are empty.
    """

    def __init__(
        self,
        queues: Sequence[str] | str | None = None,
        nats_url: str | None = None,
        concurrency: int = 10,
        worker_name: str | None = None,
        shutdown_timeout: float = 30.0,
        heartbeat_interval: float = 5.0,
        module_paths: Sequence[str] | str | None = None,
        burst: bool = False,
        *,
        ack_wait: float = 30.0,
        max_crashes: int = 3,
        settings: Settings | None = None,
        hooks: Hooks | Sequence[object] | None = None,
        events: bool | None = None,
        metrics_port: int | None = None,
        metrics_host: str = DEFAULT_METRICS_HOST,
        worker_ttl: float | None = None,
    ) -> None:
        self.settings = (settings or load_settings()).with_url(nats_url)
        names = [queues] if isinstance(queues, str) else list(queues or [])
        self.queues = [validate_queue_name(q) for q in (names or [self.settings.default_queue])]
        check_options(concurrency, shutdown_timeout, heartbeat_interval, ack_wait, max_crashes)
        refuse_original_options(worker_ttl)
        self.concurrency = concurrency
        self.shutdown_timeout = float(shutdown_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.ack_wait = float(ack_wait)
        self.max_crashes = max_crashes
        self.burst = burst
        paths = [module_paths] if isinstance(module_paths, str) else (module_paths or ())
        self.module_paths = tuple(os.path.abspath(p) for p in paths)
        self.worker_id = new_worker_id(worker_name)
        #: this worker's own hooks, run after the global ones (:mod:`naq.hooks`)
        self.hooks = as_hooks(hooks)
        #: whether it publishes events (default: ``NAQ_EVENTS``)
        self.events = self.settings.events if events is None else bool(events)
        #: Prometheus ``/metrics`` on ``metrics_port``, shared by this host's workers
        self.metrics = None if metrics_port is None else WorkerMetrics(metrics_port, metrics_host)
        self._builtin_hooks = Hooks()
        self.hook_runner = HookRunner(global_hooks, self.hooks, self._builtin_hooks)
        self._start_hooks_ran = False
        self.counters = Counters()
        self.held = HeldBack()
        self._inflight: dict[int, Delivery] = {}
        self._backlog = Backlog()
        #: (queue, priority) levels whose consumer this worker pulls from (0 always)
        self._priorities: PriorityLevels | None = None
        self._pullers: list[Puller] = []
        self._stop: asyncio.Event | None = None
        self._forced = asyncio.Event()
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._exclusive_waiting = 0
        self._exclusive_running = False
        self._released = asyncio.Event()
        self._conn: Connection | None = None
        self._fill_scheduled = False
        self._background: set[asyncio.Future[Any]] = set()
        self._loops: Loops | None = None

    @property
    def jobs_done(self) -> int:
        """Jobs this worker completed."""
        return self.counters.done

    @property
    def jobs_failed(self) -> int:
        """Jobs this worker failed for good or dead-lettered."""
        return self.counters.failed

    # -- public control -------------------------------------------------------------------
    def run_sync(self) -> None:
        """Run until stopped (blocking); for scripts and the CLI. Uses uvloop if installed."""
        eventloop.run(self.run())

    def request_stop(self) -> None:
        """Ask the worker to stop gracefully (thread-safe)."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._begin_stop)

    async def run(self) -> None:
        """Connect, then process jobs until stopped (or, with ``burst``, until idle).

        Raises :class:`~naq.errors.NaqConnectionError` if the first connection fails, or if
        the server closes the connection for good later (the process must not linger)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop = asyncio.Event()
        self._forced = asyncio.Event()
        warn_if_pickle(self.settings, "worker")
        add_module_paths((os.getcwd(), *self.module_paths))
        resolver = FunctionResolver(
            allowed_modules=self.settings.allowed_modules, module_paths=self.module_paths
        )
        for root, why in resolver.ignored_roots:
            logger.warning(
                "working directory {} does not count as project code: {}; only --module-path, "
                "NAQ_ALLOWED_MODULES and @naq.task functions run",
                root,
                why,
            )
        conn = Connection(self.settings, name=f"naq-{self.worker_id}")
        await conn.connect()
        self._conn = conn
        self.executor = Executor(self.concurrency, on_release=self._schedule_fill)
        self.results = ResultStore(conn)
        self.progress = ProgressReports(
            self.results,
            self.settings.result_ttl,
            self.hook_runner,
            self._running_hook,
            self._spawn,
        )
        self.cancel_requests = CancelRequests(conn, self._cancel_running)
        self.limit_book = LimitBook(conn)
        self.limiter = Limiter(conn, self.worker_id)
        self.dependencies = Dependencies(
            conn,
            self.results,
            self.settings.result_ttl,
            unpin_delay=UNPIN_DELAY,
            on_cancelled=self._dependant_cancelled,
        )
        self.running_marks = DelayedCalls(RUNNING_WRITE_DELAY)
        self.pipeline = JobPipeline(
            Parts(
                settings=self.settings,
                resolver=resolver,
                executor=self.executor,
                results=self.results,
                dead_letters=DeadLetters(conn),
                records=Records(self.worker_id, self.settings.result_ttl),
                running_marks=self.running_marks,
                counters=self.counters,
                max_crashes=self.max_crashes,
                max_payload=lambda: conn.max_payload,
                report_progress=self.report_progress,
                dependencies=self.dependencies,
                cancel_requests=self.cancel_requests,
                limits=lambda envelope: self.limit_book.resolve(envelope.limits, envelope.queue),
                limiter=self.limiter,
                write_running=self.write_running,
                exclusive=self.exclusive,
                forget=self.forget,
                hooks=self.hook_runner,
                worker_id=self.worker_id,
                held=self.held,
            )
        )
        self.status = WorkerStatus(
            conn, self.worker_id, self.queues, self.concurrency, self.heartbeat_interval
        )
        loops = self._loops = Loops(
            conn,
            heartbeat=self._beat,
            heartbeat_interval=self.heartbeat_interval,
            held=lambda: self._inflight.values(),
            ack_wait=self.ack_wait,
            pullers=self._pullers,
            queues=self.queues,
            idle=lambda: not (self._inflight or self._backlog or self.executor.busy),
            stop=self._begin_stop,
            burst=self.burst,
        )
        try:
            await self._prepare(conn)
            install_stop_handlers(self._loop, self._on_signal)
            loops.start()
            logger.info(
                "worker {} started: queues={} concurrency={}",
                self.worker_id,
                ",".join(self.queues),
                self.concurrency,
            )
            await self._stop.wait()
            await self._shutdown()
        finally:
            if self._start_hooks_ran:
                await self.hook_runner.fire_awaiting("on_worker_stop", self)
                await self.hook_runner.drain()
            if self.metrics is not None:
                await self.metrics.close()
            await loops.close()
            remove_stop_handlers(self._loop)
            # the jobs finished since the last heartbeat count too (bounded: NATS may be gone)
            await _quiet(asyncio.wait_for(self.counters.flush(conn), 5.0))
            # dependencies whose last dependant settled here get their expiry back
            await _quiet(asyncio.wait_for(self.dependencies.flush(), 5.0))
            await self.status.remove()
            await _quiet(self.limit_book.stop())
            for puller in self._pullers:
                await puller.close()
            self.executor.shutdown()
            self.running_marks.close()
            await conn.close()
            self._conn = None
            logger.info(
                "worker {} stopped ({} done, {} failed)",
                self.worker_id,
                self.jobs_done,
                self.jobs_failed,
            )
        if loops.failure is not None:
            raise NaqConnectionError(f"worker {self.worker_id} lost NATS: {loops.failure}")

    # -- start-up -------------------------------------------------------------------------
    async def _prepare(self, conn: Connection) -> None:
        if self.events:
            await with_retries("preparing the events stream", conn.ensure_events_stream)
            self._builtin_hooks.add_middleware(WorkerEvents(EventPublisher(conn)))
        if self.metrics is not None:
            self.metrics.start(self)
            self._builtin_hooks.add_middleware(self.metrics)
        consumer_settings = ConsumerSettings(ack_wait=self.ack_wait)
        priorities = self._priorities = PriorityLevels(
            conn,
            self.queues,
            consumer_settings,
            self._pullers,
            on_job=self._on_job,
            room=self._room,
            fill=self._schedule_fill,
            spawn=self._spawn,
        )

        async def ensure_storage() -> list[str]:
            await conn.ensure_jobs_stream()
            await conn.ensure_dlq_stream()
            await self.results.ready()
            await conn.ensure_bucket(c.WORKERS_BUCKET)
            return [await conn.ensure_consumer(q, consumer_settings) for q in self.queues]

        # connected already: a server restart or leader election now is waited out
        names = await with_retries("preparing streams and consumers", ensure_storage)
        await with_retries("reading cancel requests", self.cancel_requests.start)
        await with_retries("reading the shared limits", self._start_limits)
        for queue, name in zip(self.queues, names, strict=True):
            self._pullers.append(Puller(conn, queue, name, self._on_job, priorities.room_for(0)))
        await with_retries("watching priorities", priorities.watch)
        conn.add_reconnect_listener(self._on_reconnect)
        await with_retries("writing the worker record", self._beat)
        await self.hook_runner.fire_awaiting("on_worker_start", self)
        self._start_hooks_ran = True
        for puller in self._pullers:
            await puller.start()

    # -- dispatch -------------------------------------------------------------------------
    def _room(self) -> int:
        if self._stop is not None and self._stop.is_set():
            return 0
        # every message held counts (waiting, running, or storing its outcome), plus threads
        # still running past their timeout: never more than `concurrency` jobs held at once
        return self.concurrency - len(self._inflight) - self.executor.orphaned

    def _on_job(self, queue: str, msg: Message, priority: int = 0) -> None:
        try:
            seq, delivered = delivery_info(msg.reply)
        except ValueError:  # not a JetStream delivery: nothing to answer
            logger.warning("ignoring a message on {} that is not a delivery", queue)
            return
        held = self._inflight.get(seq)
        if held is not None and not held.settled:
            # The server redelivered a job we still hold (its lease lapsed, e.g. during an
            # outage): keep running the one copy, answering on the newest delivery.
            held.msg, held.delivered = msg, delivered
            renew_lease(held)
            return
        delivery = Delivery(msg, queue, seq, delivered, priority=priority)
        self._inflight[seq] = delivery
        if self._stop is not None and self._stop.is_set():
            # arrived while stopping: hand it straight back
            self._inflight.pop(seq, None)
            _answer(delivery, nak_body())
            return
        if self._may_start() and not self._backlog:
            self._start(delivery)
        else:
            self._backlog.append(delivery)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Run the caller's job with no other job running in this worker.

        Waits until every other started job is done, and starts no new one meanwhile; the
        caller holds its own slot already."""
        self._exclusive_waiting += 1
        try:
            # every held slot must belong to a job waiting here (this one included)
            while (
                self._exclusive_running
                or self.executor.busy - self.executor.orphaned > self._exclusive_waiting
            ):
                self._released.clear()
                await self._released.wait()
            self._exclusive_running = True
        finally:
            self._exclusive_waiting -= 1
        try:
            yield
        finally:
            self._exclusive_running = False
            self._released.set()
            self._schedule_fill()

    def _may_start(self) -> bool:
        return (
            self.executor.free_slots > 0
            and not self._exclusive_running
            and not self._exclusive_waiting
        )

    def _start(self, delivery: Delivery) -> None:
        self.executor.acquire()
        self.pipeline.start(delivery)  # it calls `forget` when it is done with it

    async def _start_limits(self) -> None:
        await self.limiter.ready()
        await self.limit_book.start()
        stop = self._stop
        self._spawn(self.limiter.keep_renewing(lambda: stop is None or stop.is_set()))

    def forget(self, delivery: Delivery) -> None:
        """Drop a delivery the processor is done with, making room for another job."""
        permit = delivery.permit
        if permit is not None and not permit.released:
            self._spawn(self.limiter.release(permit))
        if self._inflight.get(delivery.seq) is delivery:
            del self._inflight[delivery.seq]
        self._schedule_fill()  # room for another job

    def _schedule_fill(self) -> None:
        # called when a slot is released (possibly from a job thread's done callback)
        if self._fill_scheduled or self._loop is None:
            return
        self._fill_scheduled = True
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(self._fill)
        else:
            self._loop.call_soon_threadsafe(self._fill)

    def _fill(self) -> None:
        self._fill_scheduled = False
        self._released.set()
        stopping = self._stop is not None and self._stop.is_set()
        while self._backlog and self._may_start() and not stopping:
            self._start(self._backlog.popleft())
        if not stopping:
            for puller in self._pullers:
                if puller.wants_more():
                    puller.request_more()

    def _dependant_cancelled(self, record: JobRecord) -> None:
        """A deferred job was cancelled here (a job it depends on failed): ``on_cancel``."""
        if self.hook_runner.has("on_cancel"):
            self.hook_runner.fire("on_cancel", cancelled_run(record, self.worker_id))

    def _cancel_running(self, job_id: str) -> None:
        """``cancel_job`` was asked for ``job_id``: stop it if this worker runs it."""
        for delivery in list(self._inflight.values()):
            if delivery.job_id == job_id and delivery.state is State.RUNNING:
                logger.bind(job_id=job_id).info("cancelling running job {}", job_id)
                delivery.request_cancel()

    async def _reload_cancel_requests(self) -> None:
        try:
            await self.cancel_requests.reload()
        except Exception as exc:  # noqa: BLE001 - the next reconnect reads them again
            logger.warning("could not read the cancel requests after reconnecting: {}", exc)

    async def _on_reconnect(self) -> None:
        # renew the leases of what we hold before asking for more
        for delivery in list(self._inflight.values()):
            if not delivery.settled:
                renew_lease(delivery)
        # cancel requests stored while we were away were pushed to nobody
        self._spawn(self._reload_cancel_requests())
        for puller in self._pullers:
            puller.reset()
            puller.request_more()

    def _unsettled(self) -> int:
        return sum(1 for d in self._inflight.values() if not d.settled)

    # -- background loops -----------------------------------------------------------------
    async def _beat(self) -> None:
        if self._priorities is not None:
            await self._priorities.scan()
        running = [d.job_id for d in self._inflight.values() if d.job_id and not d.settled]
        status = "stopping" if self._stop is not None and self._stop.is_set() else "running"
        await self.status.beat(running, self.jobs_done, self.jobs_failed, status, self.held)
        # what finished since the last beat, into the queues' shared totals (naq queues)
        await self.counters.flush(self._conn_or_raise())
        if self.metrics is not None:
            levels = [(p.queue, p.priority) for p in self._pullers]
            await self.metrics.refresh(self._conn_or_raise(), levels)

    # -- progress -------------------------------------------------------------------------
    def report_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        """Store a running job's progress (thread-safe; compare-and-set on its record)."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self.progress.report, job_id, fraction, message)

    def _running_hook(self, job_id: str) -> JobRun | None:
        """The :class:`JobRun` of ``job_id``'s run here, if it has one."""
        for delivery in self._inflight.values():
            if delivery.job_id == job_id and delivery.run is not None:
                return delivery.run.hook
        return None

    def write_running(self, job_id: str, payload: bytes, ttl: int) -> asyncio.Task[None]:
        """Store the ``running`` record in the background; the job's outcome write awaits the
        returned task first, so the two can never land out of order."""
        conn = self._conn_or_raise()

        async def send() -> None:
            try:
                await conn.publish(record_subject(job_id), payload, {c.HEADER_TTL: str(ttl)})
            except Exception as exc:  # noqa: BLE001 - status only; the outcome write matters
                logger.debug("running-status write for {} failed: {}", job_id, exc)

        task = asyncio.ensure_future(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _spawn(self, awaitable: Any) -> None:
        """Run ``awaitable`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _conn_or_raise(self) -> Connection:
        if self._conn is None:
            raise ConfigurationError("worker is not running")
        return self._conn

    # -- shutdown -------------------------------------------------------------------------
    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            logger.info(
                "received {}; finishing running jobs (up to {:g} s); signal again to stop at once",
                signal.Signals(sig).name,
                self.shutdown_timeout,
            )
            self._begin_stop()
        else:
            logger.warning("second signal: handing running jobs back and exiting now")
            self._forced.set()
            self._begin_stop()

    def _begin_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        for puller in self._pullers:
            self._spawn(puller.stop())

    async def _shutdown(self) -> None:
        # jobs not started yet go back at once
        backlog = list(self._backlog)
        self._backlog.clear()
        for delivery in backlog:
            self.forget(delivery)
        await asyncio.gather(*(hand_back(d, self.settings, self.results) for d in backlog))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        forced = asyncio.ensure_future(self._forced.wait())
        try:
            # every forgotten delivery sets `_released`: wait until none is left unsettled
            while self._unsettled() and not self._forced.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._released.clear()
                released = asyncio.ensure_future(self._released.wait())
                try:
                    await asyncio.wait(
                        {released, forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    released.cancel()
        finally:
            forced.cancel()
        running = self._unsettled()
        if running and not self._forced.is_set():
            logger.warning(
                "{} job(s) still running after {:g} s; handing them back",
                running,
                self.shutdown_timeout,
            )
        # whatever is still unsettled: hand back now so another worker picks it up
        unsettled = [d for d in self._inflight.values() if not d.settled]
        for delivery in unsettled:
            if delivery.run is not None:
                delivery.run.ctx.request_cancel()
        await asyncio.gather(*(hand_back(d, self.settings, self.results) for d in unsettled))
        leftover: list[asyncio.Task[Any]] = []
        for delivery in list(self._inflight.values()):
            for task in (delivery.task, delivery.job_task):
                if task is not None and not task.done():
                    task.cancel()
                    leftover.append(task)
        if leftover:
            await asyncio.wait(leftover, timeout=1.0)
        if self._conn is not None and self._conn.is_connected:
            await _quiet(self._conn.flush(timeout=2))


def _answer(delivery: Delivery, body: bytes) -> None:
    """Settle a held message (hand-back); the connection may be gone."""
    try:
        delivery.settle(body)
    except Exception as exc:  # noqa: BLE001 - reconnecting or closed: nothing to do
        logger.debug("could not answer {}: {}", delivery.msg.reply, exc)


async def _quiet(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:  # noqa: BLE001
        logger.debug("ignored during shutdown: {}", exc)
