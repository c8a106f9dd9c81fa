"""Synchronous API: ``*_sync`` helpers and :class:`SyncClient`.

All of it runs on one private event loop in one background daemon thread, started on first
use and reused, so repeated calls from any thread share one connection per URL."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import admin, api
from .calls import prepare_call
from .deadletter import DeadLetter
from .errors import WriteConflictError
from .job import Job, JobInfo, QueueInfo, WorkerInfo, split_options
from .models import JobStatus
from .queue import Queue, enqueue_writes
from .results import ResultStore
from .settings import load_settings, validate_queue_name
from .transport import Connection, blocking
from .transport.errors import api_error

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from .scheduling import Schedule

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name="naq-sync-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and return its result (blocking the caller)."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("naq sync helpers cannot be called from naq's own loop thread")
        # A plain lock as the hand-back: about half the cost of run_coroutine_threadsafe's
        # chained concurrent future (this is every enqueue_sync call's overhead).
        finished = threading.Lock()
        finished.acquire()
        started: list[asyncio.Future[T]] = []

        def start() -> None:
            try:
                task: asyncio.Future[T] = loop.create_task(coro)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                coro.close()
                task = loop.create_future()
                task.set_exception(exc)
            started.append(task)
            if task.done():
                finished.release()
            else:
                task.add_done_callback(lambda _task: finished.release())

        loop.call_soon_threadsafe(start)
        try:
            finished.acquire()
        except BaseException:  # e.g. KeyboardInterrupt while waiting: stop the call too
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in started])
            raise
        return started[0].result()

    def stop(self) -> None:
        """Close shared connections and stop the loop (at interpreter exit)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(api.close(), loop).result(timeout=5)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)


_runner = _LoopThread()
atexit.register(_runner.stop)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a naq coroutine from synchronous code on the shared loop thread."""
    return _runner.run(coro)


def enqueue_sync(func: Any, *args: Any, **kwargs: Any) -> Job:
    """Blocking :func:`naq.enqueue`.

    Publishes from the calling thread on a blocking connection of its own (see
    :mod:`naq.blocking`) when it can; custom ``job_id`` and credentials files take the
    shared loop thread instead."""
    queue_name, nats_url = kwargs.pop("queue_name", None), kwargs.pop("nats_url", None)
    queue = Queue(queue_name, settings=load_settings(nats_url))
    job = _enqueue_blocking(queue, func, args, kwargs)
    if job is not None:
        return job
    return _runner.run(api.enqueue(func, *args, queue_name=queue.name, nats_url=nats_url, **kwargs))


_storage_ready: set[tuple[str, ...]] = set()  # servers whose streams/buckets were ensured


def _ensure_storage(queue: Queue) -> None:
    async def ensure() -> None:
        conn = await api.shared_connection(settings=queue.settings)
        await conn.ensure_jobs_stream()
        await ResultStore(conn).ready()

    _runner.run(ensure())
    _storage_ready.add(queue.settings.nats_urls)


def _enqueue_blocking(
    queue: Queue, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Job | None:
    """Enqueue on the calling thread's blocking connection; ``None`` when this call needs
    the async path (nothing was sent then). Validation errors raise before anything."""
    settings = queue.settings
    if not blocking.supports(settings) or kwargs.get("job_id") is not None:
        return None  # a custom id is claimed by compare-and-set first: the async path
    options, call_kwargs = split_options(kwargs)
    job, envelope = prepare_call(queue, func, args, call_kwargs, options)
    if settings.nats_urls not in _storage_ready:
        _ensure_storage(queue)
    messages = enqueue_writes(settings, job, envelope, options.result_ttl or settings.result_ttl)
    client = blocking.for_thread(settings)
    replies = client.request_many(messages)
    if replies[1].status == "503":  # the stream was deleted since: create it, send again
        _storage_ready.discard(settings.nats_urls)
        _ensure_storage(queue)
        replies = client.request_many(messages)
    for reply in replies:
        error = reply.error()
        if error is not None:
            refusal = api_error(error, f"enqueue of job {job.job_id}")
            if not isinstance(refusal, WriteConflictError):  # a pending record after the
                raise refusal  # outcome is refused on purpose: the outcome stays
    return job


def enqueue_many_sync(calls: Iterable[Any], **options: Any) -> list[Job]:
    """Blocking :func:`naq.enqueue_many`."""
    return _runner.run(api.enqueue_many(list(calls), **options))


def fetch_job_result_sync(
    job_id: str, timeout: float | None = None, *, nats_url: str | None = None
) -> Any:
    """Blocking :func:`naq.fetch_job_result`."""
    return _runner.run(api.fetch_job_result(job_id, timeout, nats_url=nats_url))


def get_job_status_sync(job_id: str, *, nats_url: str | None = None) -> JobStatus:
    """Blocking :func:`naq.get_job_status`."""
    return _runner.run(api.get_job_status(job_id, nats_url=nats_url))


def get_job_info_sync(job_id: str, *, nats_url: str | None = None) -> JobInfo:
    """Blocking :func:`naq.get_job_info`."""
    return _runner.run(api.get_job_info(job_id, nats_url=nats_url))


def purge_queue_sync(queue_name: str | None = None, *, nats_url: str | None = None) -> int:
    """Blocking :func:`naq.purge_queue`."""
    return _runner.run(api.purge_queue(queue_name, nats_url=nats_url))


def list_workers_sync(*, nats_url: str | None = None) -> list[WorkerInfo]:
    """Blocking :func:`naq.list_workers`."""
    return _runner.run(api.list_workers(nats_url=nats_url))


def list_queues_sync(*, nats_url: str | None = None) -> list[QueueInfo]:
    """Blocking :func:`naq.list_queues`."""
    return _runner.run(api.list_queues(nats_url=nats_url))


def enqueue_at_sync(when: datetime, func: Any, *args: Any, **kwargs: Any) -> Job:
    """Blocking :func:`naq.enqueue_at`."""
    return _runner.run(api.enqueue_at(when, func, *args, **kwargs))


def enqueue_in_sync(delay: timedelta | float, func: Any, *args: Any, **kwargs: Any) -> Job:
    """Blocking :func:`naq.enqueue_in`."""
    return _runner.run(api.enqueue_in(delay, func, *args, **kwargs))


def schedule_sync(func: Any, *args: Any, **kwargs: Any) -> Schedule:
    """Blocking :func:`naq.schedule`."""
    return _runner.run(api.schedule(func, *args, **kwargs))


def cancel_scheduled_job_sync(schedule_id: str, *, nats_url: str | None = None) -> bool:
    """Blocking :func:`naq.cancel_scheduled_job`."""
    return _runner.run(api.cancel_scheduled_job(schedule_id, nats_url=nats_url))


def pause_scheduled_job_sync(schedule_id: str, *, nats_url: str | None = None) -> Schedule:
    """Blocking :func:`naq.pause_scheduled_job`."""
    return _runner.run(api.pause_scheduled_job(schedule_id, nats_url=nats_url))


def resume_scheduled_job_sync(schedule_id: str, *, nats_url: str | None = None) -> Schedule:
    """Blocking :func:`naq.resume_scheduled_job`."""
    return _runner.run(api.resume_scheduled_job(schedule_id, nats_url=nats_url))


def modify_scheduled_job_sync(
    schedule_id: str, *, nats_url: str | None = None, **changes: Any
) -> Schedule:
    """Blocking :func:`naq.modify_scheduled_job`."""
    return _runner.run(api.modify_scheduled_job(schedule_id, nats_url=nats_url, **changes))


def list_schedules_sync(
    *, queue_name: str | None = None, nats_url: str | None = None, limit: int | None = None
) -> list[Schedule]:
    """Blocking :func:`naq.list_schedules`."""
    return _runner.run(api.list_schedules(queue_name=queue_name, nats_url=nats_url, limit=limit))


def list_dead_letters_sync(
    queue_name: str | None = None, *, limit: int = 100, nats_url: str | None = None
) -> list[DeadLetter]:
    """Blocking :func:`naq.list_dead_letters`."""
    return _runner.run(api.list_dead_letters(queue_name, limit=limit, nats_url=nats_url))


def requeue_dead_letter_sync(entry_id: int, *, nats_url: str | None = None) -> str | None:
    """Blocking :func:`naq.requeue_dead_letter`."""
    return _runner.run(api.requeue_dead_letter(entry_id, nats_url=nats_url))


def purge_dead_letters_sync(queue_name: str | None = None, *, nats_url: str | None = None) -> int:
    """Blocking :func:`naq.purge_dead_letters`."""
    return _runner.run(api.purge_dead_letters(queue_name, nats_url=nats_url))


class SyncClient:
    """A blocking client holding one connection: ``with naq.SyncClient() as client: ...``.

    Offers the module-level calls as methods without the ``_sync`` suffix.
    """

    def __init__(self, nats_url: str | None = None, queue_name: str | None = None) -> None:
        self.settings = load_settings(nats_url)
        self.queue_name = validate_queue_name(
            self.settings.default_queue if queue_name is None else queue_name
        )
        self._conn: Connection | None = None

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Open the connection (done by ``with``)."""
        if self._conn is None:
            conn = Connection(self.settings, name="naq-sync-client")
            _runner.run(conn.connect())
            self._conn = conn

    def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _runner.run(conn.close())

    def _queue(self, queue_name: str | None = None) -> Queue:
        self.connect()
        return Queue(
            self.queue_name if queue_name is None else queue_name,
            connection=self._conn,
            settings=self.settings,
        )

    def enqueue(self, func: Any, *args: Any, queue_name: str | None = None, **kwargs: Any) -> Job:
        """Enqueue ``func(*args, **kwargs)`` (from this thread's blocking connection when
        it can, like :func:`enqueue_sync`)."""
        name = self.queue_name if queue_name is None else queue_name
        job = _enqueue_blocking(Queue(name, settings=self.settings), func, args, kwargs)
        if job is not None:
            return job
        return _runner.run(self._queue(queue_name).enqueue(func, *args, **kwargs))

    def enqueue_many(
        self, calls: Iterable[Any], *, queue_name: str | None = None, **options: Any
    ) -> list[Job]:
        """Enqueue many ``(func, args, kwargs)`` calls."""
        return _runner.run(self._queue(queue_name).enqueue_many(list(calls), **options))

    def fetch_job_result(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's return value (waits up to ``timeout`` s)."""
        return _runner.run(self._queue().fetch_job_result(job_id, timeout=timeout))

    def get_job_status(self, job_id: str) -> JobStatus:
        """The job's status."""
        return _runner.run(self._queue().get_job_status(job_id))

    def get_job_info(self, job_id: str) -> JobInfo:
        """The job's whole record."""
        return _runner.run(self._queue().get_job_info(job_id))

    def purge_queue(self, queue_name: str | None = None) -> int:
        """Remove every waiting job of the queue; returns how many."""
        self.connect()
        assert self._conn is not None
        name = validate_queue_name(self.queue_name if queue_name is None else queue_name)
        return _runner.run(admin.purge_queue_jobs(self._conn, name))

    def list_workers(self) -> list[WorkerInfo]:
        """Live workers."""
        return _runner.run(admin.list_workers(self._connection()))

    def list_queues(self) -> list[QueueInfo]:
        """Queues and their counts."""
        return _runner.run(admin.list_queues(self._connection()))

    def _connection(self) -> Connection:
        self.connect()
        assert self._conn is not None
        return self._conn

    def enqueue_at(
        self, when: datetime, func: Any, *args: Any, queue_name: str | None = None, **kwargs: Any
    ) -> Job:
        """Run ``func(*args, **kwargs)`` at ``when`` (naive = UTC)."""
        return _runner.run(self._queue(queue_name).enqueue_at(when, func, *args, **kwargs))

    def enqueue_in(
        self,
        delay: timedelta | float,
        func: Any,
        *args: Any,
        queue_name: str | None = None,
        **kwargs: Any,
    ) -> Job:
        """Run ``func(*args, **kwargs)`` after ``delay``."""
        return _runner.run(self._queue(queue_name).enqueue_in(delay, func, *args, **kwargs))

    def schedule(
        self, func: Any, *args: Any, queue_name: str | None = None, **kwargs: Any
    ) -> Schedule:
        """Store a recurring schedule (``cron=`` or ``interval=``, ...)."""
        return _runner.run(self._queue(queue_name).schedule(func, *args, **kwargs))

    def cancel_scheduled_job(self, schedule_id: str) -> bool:
        """Cancel a schedule or a waiting ``enqueue_at`` job."""
        return _runner.run(self._queue().cancel_scheduled_job(schedule_id))

    def pause_scheduled_job(self, schedule_id: str) -> Schedule:
        """Pause a schedule or a waiting ``enqueue_at`` job."""
        return _runner.run(self._queue().pause_scheduled_job(schedule_id))

    def resume_scheduled_job(self, schedule_id: str) -> Schedule:
        """Resume a paused schedule or ``enqueue_at`` job."""
        return _runner.run(self._queue().resume_scheduled_job(schedule_id))

    def modify_scheduled_job(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change a schedule (``cron``, ``interval``, ``repeat``, ``next_run``, ...)."""
        return _runner.run(self._queue().modify_scheduled_job(schedule_id, **changes))

    def list_schedules(
        self, *, queue_name: str | None = None, limit: int | None = None
    ) -> list[Schedule]:
        """Recurring schedules and waiting ``enqueue_at`` jobs (all queues by default)."""
        from .scheduling import list_schedules

        queue = self._queue(queue_name)
        return _runner.run(list_schedules(queue, all_queues=queue_name is None, limit=limit))
