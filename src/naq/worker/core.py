"""The :class:`Worker`: pulls jobs from its queues and runs them, keeping every invariant:
ack only after the outcome is stored, leases renewed while a job runs, dead letters for
anything that cannot run, and a graceful, bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from loguru import logger
from nats.aio.msg import Msg

from .. import constants as c
from .. import eventloop
from ..connection import Connection, ConsumerSettings
from ..deadletter import DeadLetters
from ..errors import ConfigurationError
from ..functions import FunctionResolver, add_module_paths
from ..models import FINAL_STATUSES, JobStatus, decode_envelope
from ..results import ResultStore, record_subject
from ..serialization import warn_if_pickle
from ..settings import Settings, load_settings, validate_queue_name
from ..signals import install_stop_handlers, remove_stop_handlers
from ..wire import IN_PROGRESS, delivery_info, nak_body, reply_to
from .delayed import DelayedCalls
from .executor import Executor
from .processing import RUNNING_WRITE_DELAY, Delivery, JobProcessor, with_retries
from .puller import Puller
from .status import WorkerStatus

_FINAL = frozenset(s.value for s in FINAL_STATUSES)


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
        module_paths: Sequence[str] | None = None,
        burst: bool = False,
        *,
        ack_wait: float = 30.0,
        max_crashes: int = 3,
        settings: Settings | None = None,
    ) -> None:
        self.settings = (settings or load_settings()).with_url(nats_url)
        names = [queues] if isinstance(queues, str) else list(queues or [])
        self.queues = [validate_queue_name(q) for q in (names or [self.settings.default_queue])]
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        for name, value in (
            ("shutdown_timeout", shutdown_timeout),
            ("heartbeat_interval", heartbeat_interval),
            ("ack_wait", ack_wait),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if heartbeat_interval <= 0 or ack_wait < 1:
            raise ConfigurationError("heartbeat_interval must be > 0 and ack_wait >= 1 s")
        if max_crashes < 0:
            raise ConfigurationError(f"max_crashes must be >= 0, got {max_crashes!r}")
        self.concurrency = concurrency
        self.shutdown_timeout = float(shutdown_timeout)
        self.heartbeat_interval = float(heartbeat_interval)
        self.ack_wait = float(ack_wait)
        self.max_crashes = max_crashes
        self.burst = burst
        self.module_paths = tuple(os.path.abspath(p) for p in (module_paths or ()))
        suffix = uuid.uuid4().hex[:8]
        self.worker_id = f"{worker_name}-{suffix}" if worker_name else f"worker-{suffix}"
        if not c.JOB_ID_RE.match(self.worker_id):
            raise ConfigurationError(
                f"worker_name {worker_name!r} is invalid: letters, digits, '_' or '-'"
            )
        self.jobs_done = 0
        self.jobs_failed = 0
        self._inflight: dict[int, Delivery] = {}
        self._backlog: deque[Delivery] = deque()
        self._pullers: list[Puller] = []
        self._stop: asyncio.Event | None = None
        self._forced = asyncio.Event()
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._closing = False
        self._exclusive_waiting = 0
        self._exclusive_running = False
        self._released = asyncio.Event()
        self._conn: Connection | None = None
        self._fill_scheduled = False
        self._background: set[asyncio.Future[Any]] = set()

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
        """Connect, then process jobs until stopped (or, with ``burst``, until idle)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closing = False
        self._stop = asyncio.Event()
        self._forced = asyncio.Event()
        warn_if_pickle(self.settings, "worker")
        add_module_paths((os.getcwd(), *self.module_paths))
        self.resolver = FunctionResolver(
            allowed_modules=self.settings.allowed_modules, module_paths=self.module_paths
        )
        conn = Connection(self.settings, name=f"naq-{self.worker_id}")
        await conn.connect()
        self._conn = conn
        self.executor = Executor(self.concurrency, on_release=self._schedule_fill)
        self.results = ResultStore(conn)
        self.dead_letters = DeadLetters(conn)
        self.processor = JobProcessor(self)
        self.running_marks = DelayedCalls(RUNNING_WRITE_DELAY)
        self.status = WorkerStatus(
            conn, self.worker_id, self.queues, self.concurrency, self.heartbeat_interval
        )
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self._prepare(conn)
            install_stop_handlers(self._loop, self._on_signal)
            tasks = [
                asyncio.create_task(self._heartbeat_loop(), name="naq-heartbeat"),
                asyncio.create_task(self._lease_loop(), name="naq-lease"),
                asyncio.create_task(self._watchdog_loop(), name="naq-watchdog"),
            ]
            if self.burst:
                tasks.append(asyncio.create_task(self._burst_loop(), name="naq-burst"))
            logger.info(
                "worker {} started: queues={} concurrency={}",
                self.worker_id,
                ",".join(self.queues),
                self.concurrency,
            )
            await self._stop.wait()
            await self._shutdown()
        finally:
            # loops also watch `_closing`: a nats-py request interrupted by a cancel can
            # swallow the CancelledError, and shutdown must not wait for such a loop forever
            self._closing = True
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            remove_stop_handlers(self._loop)
            await self.status.remove()
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

    # -- start-up -------------------------------------------------------------------------
    async def _prepare(self, conn: Connection) -> None:
        consumer_settings = ConsumerSettings(ack_wait=self.ack_wait)

        async def ensure_storage() -> list[str]:
            await conn.ensure_jobs_stream()
            await conn.ensure_dlq_stream()
            await self.results.ready()
            await conn.kv(c.WORKERS_BUCKET)
            return [await conn.ensure_consumer(q, consumer_settings) for q in self.queues]

        # connected already: a server restart or leader election now is waited out
        names = await with_retries("preparing streams and consumers", ensure_storage)
        for queue, name in zip(self.queues, names, strict=True):
            self._pullers.append(Puller(conn, queue, name, self._on_job, self._room))
        conn.add_reconnect_listener(self._on_reconnect)
        await with_retries("writing the worker record", self._beat)
        for puller in self._pullers:
            await puller.start()

    # -- dispatch -------------------------------------------------------------------------
    def _room(self) -> int:
        if self._stop is not None and self._stop.is_set():
            return 0
        # every message held counts (waiting, running, or storing its outcome), plus threads
        # still running past their timeout: never more than `concurrency` jobs held at once
        return self.concurrency - len(self._inflight) - self.executor.orphaned

    def _on_job(self, msg: Msg) -> None:
        seq, delivered = delivery_info(msg.reply)
        held = self._inflight.get(seq)
        if held is not None and not held.settled:
            # The server redelivered a job we still hold (its lease lapsed, e.g. during an
            # outage): keep running the one copy, answering on the newest delivery.
            held.msg, held.delivered = msg, delivered
            _answer(msg, IN_PROGRESS)
            return
        delivery = Delivery(msg, seq, delivered)
        self._inflight[seq] = delivery
        if self._stop is not None and self._stop.is_set():
            # arrived while stopping: hand it straight back
            delivery.settled = True
            self._inflight.pop(seq, None)
            _answer(msg, nak_body())
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
        self.processor.start(delivery)  # it calls `forget` when it is done with it

    def forget(self, delivery: Delivery) -> None:
        """Drop a delivery the processor is done with, making room for another job."""
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

    async def _on_reconnect(self) -> None:
        # renew the leases of what we hold before asking for more
        for delivery in list(self._inflight.values()):
            if not delivery.settled:
                _answer(delivery.msg, IN_PROGRESS)
        for puller in self._pullers:
            puller.reset()
            puller.request_more()

    def _unsettled(self) -> int:
        return sum(1 for d in self._inflight.values() if not d.settled)

    # -- background loops -----------------------------------------------------------------
    async def _beat(self) -> None:
        running = [d.job_id for d in self._inflight.values() if d.job_id and not d.settled]
        status = "stopping" if self._stop is not None and self._stop.is_set() else "running"
        await self.status.beat(running, self.jobs_done, self.jobs_failed, status)

    async def _heartbeat_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._beat()
            except Exception as exc:  # noqa: BLE001 - reconnecting; try next beat
                logger.debug("heartbeat failed: {}", exc)

    async def _lease_loop(self) -> None:
        """Renew the lease (``in_progress``) of every held message well inside ``ack_wait``."""
        interval = max(0.2, self.ack_wait / 3)
        while not self._closing:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for delivery in list(self._inflight.values()):
                if not delivery.settled and now - delivery.received_at >= interval * 0.9:
                    _answer(delivery.msg, IN_PROGRESS)

    async def _watchdog_loop(self) -> None:
        """Re-issue pull requests the server may have lost (e.g. across a restart)."""
        while not self._closing:
            await asyncio.sleep(1.0)
            for puller in self._pullers:
                if puller.stale():
                    puller.reset()
                puller.request_more()

    async def _burst_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        while not self._closing:
            await asyncio.sleep(0.2)
            if self._inflight or self._backlog or self.executor.busy:
                continue
            if await self._queues_empty(conn):
                # messages may be in flight to us: give them a moment to land
                await asyncio.sleep(0.1)
                if not self._inflight and not self._backlog and await self._queues_empty(conn):
                    logger.info("burst: queues are empty, stopping")
                    self._begin_stop()
                    return

    async def _queues_empty(self, conn: Connection) -> bool:
        for queue in self.queues:
            info = await conn.js.consumer_info(c.JOBS_STREAM, c.consumer_name(queue))
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    # -- progress -------------------------------------------------------------------------
    def report_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        """Store a running job's progress (thread-safe; compare-and-set on its record)."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(
            lambda: self._spawn(self._store_progress(job_id, fraction, message))
        )

    async def _store_progress(self, job_id: str, fraction: float, message: str | None) -> None:
        try:
            found = await self.results.get_entry(job_id)
            if found is None:
                return
            record, revision = found
            if record.status in _FINAL:
                return  # the outcome is stored; progress must not touch it
            record.status = JobStatus.RUNNING.value
            record.progress, record.progress_message = fraction, message
            await self.results.update(record, revision, self.settings.result_ttl)
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            logger.debug("progress update for {} skipped: {}", job_id, exc)

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

    async def _hand_back(self, delivery: Delivery) -> None:
        """Return an unfinished delivery to the queue at once (``nak``), first counting it in
        the job's record so the hand-back does not use up one of the job's attempts."""
        delivery.settled = True
        job_id = _job_id_of(delivery)
        if job_id is not None:
            try:
                await asyncio.wait_for(self._count_hand_back(job_id), 2.0)
            except Exception as exc:  # noqa: BLE001 - the nak matters more than the count
                logger.debug("could not count the hand-back of {}: {}", job_id, exc)
        _answer(delivery.msg, nak_body())

    async def _count_hand_back(self, job_id: str) -> None:
        for _ in range(3):
            found = await self.results.get_entry(job_id)
            if found is None:
                return
            record, revision = found
            if record.status in _FINAL:
                return
            record.handed_back += 1
            record.status = JobStatus.PENDING.value
            if await self.results.update(record, revision, self.settings.result_ttl):
                return

    async def _shutdown(self) -> None:
        # jobs not started yet go back at once
        backlog = list(self._backlog)
        self._backlog.clear()
        for delivery in backlog:
            self.forget(delivery)
        await asyncio.gather(*(self._hand_back(d) for d in backlog))
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
        await asyncio.gather(*(self._hand_back(d) for d in unsettled))
        for delivery in list(self._inflight.values()):
            if delivery.task is not None and not delivery.task.done():
                delivery.task.cancel()
        leftover = [d.task for d in self._inflight.values() if d.task is not None]
        if leftover:
            await asyncio.wait(leftover, timeout=1.0)
        if self._conn is not None and self._conn.is_connected:
            await _quiet(self._conn.nc.flush(timeout=2))


def _answer(msg: Msg, body: bytes) -> None:
    """Answer a held message (lease renewal, hand-back); the connection may be gone."""
    try:
        reply_to(msg, body)
    except Exception as exc:  # noqa: BLE001 - reconnecting or closed: nothing to do
        logger.debug("could not answer {}: {}", msg.reply, exc)


async def _quiet(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as exc:  # noqa: BLE001
        logger.debug("ignored during shutdown: {}", exc)


def _job_id_of(delivery: Delivery) -> str | None:
    if delivery.job_id is not None:
        return delivery.job_id
    try:
        return decode_envelope(delivery.msg.data).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
