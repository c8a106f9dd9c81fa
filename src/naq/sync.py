"""Synchronous API: ``*_sync`` helpers and :class:`SyncClient`.

All of it runs on one private event loop in one background daemon thread
(:mod:`naq.syncloop`), started on first use and reused, so repeated calls from any thread
share one connection per URL. ``enqueue_sync`` publishes from the calling thread when it can.

Each async helper of :mod:`naq.api` has a twin here with the very same parameters, and a
:class:`SyncClient` method; :mod:`naq.surface` lists them and a test holds them to it.

After ``os.fork()`` the child starts its own loop and connections on its next call; at
interpreter exit every connection still open (and every unclosed :class:`SyncClient`) is
closed before the loop stops."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from . import admin, api, deadletter, limits, pausing
from .calls import prepare_call
from .constants import DUPLICATE_WINDOW
from .errors import (
    LoginRefusedError,
    NaqConnectionError,
    PublishNotConfirmedError,
    ServerError,
    WriteConflictError,
)
from .info import JobInfo, QueueInfo, WorkerInfo
from .job import Job, split_options, use_blocking_result_reader
from .limits import LimitSpec
from .models import JobStatus
from .queue import Queue, Write, enqueue_writes
from .results import ResultStore
from .settings import load_settings, validate_queue_name
from .syncloop import LoopThread
from .transport import Connection, blocking
from .transport.blocking import PublishReply
from .transport.errors import api_error

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from .deadletter import DeadLetter
    from .scheduling import Schedule

P = ParamSpec("P")
T = TypeVar("T")

_runner = LoopThread("naq-sync-loop")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a naq coroutine from synchronous code on the shared loop thread."""
    return _runner.run(coro)


def _blocking_twin(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """``func``'s blocking twin ``<name>_sync``: the same parameters (for ``inspect``, IDEs
    and type checkers alike), run on the shared loop thread."""

    @functools.wraps(func)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return _runner.run(func(*args, **kwargs))

    twin.__module__ = __name__
    twin.__name__ = twin.__qualname__ = f"{func.__name__}_sync"
    twin.__doc__ = f"Blocking :func:`naq.{func.__name__}`.\n\n{func.__doc__ or ''}".rstrip()
    return twin


def enqueue_sync(
    func: Any,
    *args: Any,
    queue_name: str | None = None,
    nats_url: str | None = None,
    **kwargs: Any,
) -> Job:
    """Blocking :func:`naq.enqueue`.

    Publishes from the calling thread on a blocking connection of its own (see
    :mod:`naq.transport.blocking`) when it can; custom ``job_id`` and credentials files take
    the shared loop thread instead."""
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


#: How long one attempt of a blocking enqueue waits for the server's answers (seconds).
_ATTEMPT_TIMEOUT = 3.0


def _send_until_answered(
    queue: Queue, job_id: str, messages: Sequence[Write]
) -> list[PublishReply]:
    """Send an enqueue's writes (a job with its message id, a create-if-absent record:
    both stored at most once) until the server answers both, re-sending the same messages
    through a lost connection or a stream without leader ("no responders": on a cluster an
    election, on a single server a deleted stream, created again) for up to
    ``settings.publish_deadline`` seconds; then :class:`PublishNotConfirmedError`."""
    settings = queue.settings
    client = blocking.for_thread(settings)
    give_up = time.monotonic() + settings.publish_deadline
    pause = 0.25
    while True:
        left = give_up - time.monotonic()
        try:
            replies = client.request_many(messages, timeout=max(0.5, min(_ATTEMPT_TIMEOUT, left)))
        except (ServerError, LoginRefusedError):
            raise  # refused (permissions, login, certificates): sending again changes nothing
        except NaqConnectionError as exc:
            why = str(exc)
        else:
            if all(reply.status != "503" for reply in replies):
                return replies
            why = "no responders: no stream leader, or the stream is gone"
            _storage_ready.discard(settings.nats_urls)
            try:
                _ensure_storage(queue)  # a deleted stream is created again
            except NaqConnectionError as exc:  # e.g. a cluster electing its leaders
                why = str(exc)
        if time.monotonic() + pause >= give_up:
            raise PublishNotConfirmedError(
                f"NATS did not confirm the enqueue of job {job_id} within "
                f"{settings.publish_deadline:g} s of retries with the same message id "
                f"({why}); it may not be stored. Enqueuing it again with the same job_id "
                f"is safe within the {DUPLICATE_WINDOW:g} s duplicate window"
            )
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _enqueue_blocking(
    queue: Queue, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Job | None:
    """Enqueue on the calling thread's blocking connection; ``None`` when this call needs
    the async path (nothing was sent then). Validation errors raise before anything."""
    settings = queue.settings
    if (
        not blocking.supports(settings)
        or kwargs.get("job_id") is not None
        or kwargs.get("depends_on") is not None
        or queue.has_enqueue_hooks
    ):
        # a custom id is claimed by compare-and-set first, a dependent job is deferred
        # (see naq.dependencies), hooks are awaited: the async path
        return None
    options, call_kwargs = split_options(kwargs)
    job, envelope = prepare_call(queue, func, args, call_kwargs, options)
    if settings.nats_urls not in _storage_ready:
        _ensure_storage(queue)
    messages = enqueue_writes(settings, job, envelope, options.result_ttl or settings.result_ttl)
    replies = _send_until_answered(queue, job.job_id, messages)
    for reply in replies:
        error = reply.error()
        if error is not None:
            refusal = api_error(error, f"enqueue of job {job.job_id}")
            if not isinstance(refusal, WriteConflictError):  # a pending record after the
                raise refusal  # outcome is refused on purpose: the outcome stays
    return job


enqueue_many_sync = _blocking_twin(api.enqueue_many)
enqueue_at_sync = _blocking_twin(api.enqueue_at)
enqueue_in_sync = _blocking_twin(api.enqueue_in)
schedule_sync = _blocking_twin(api.schedule)
fetch_job_result_sync = _blocking_twin(api.fetch_job_result)
use_blocking_result_reader(fetch_job_result_sync)  # Job.fetch_result_sync, the original's shape
get_job_status_sync = _blocking_twin(api.get_job_status)
get_job_info_sync = _blocking_twin(api.get_job_info)
purge_queue_sync = _blocking_twin(api.purge_queue)
pause_queue_sync = _blocking_twin(api.pause_queue)
resume_queue_sync = _blocking_twin(api.resume_queue)
list_workers_sync = _blocking_twin(api.list_workers)
list_queues_sync = _blocking_twin(api.list_queues)
list_dead_letters_sync = _blocking_twin(api.list_dead_letters)
requeue_dead_letter_sync = _blocking_twin(api.requeue_dead_letter)
requeue_dead_letters_sync = _blocking_twin(api.requeue_dead_letters)
purge_dead_letters_sync = _blocking_twin(api.purge_dead_letters)
cancel_job_sync = _blocking_twin(api.cancel_job)
cancel_scheduled_job_sync = _blocking_twin(api.cancel_scheduled_job)
pause_scheduled_job_sync = _blocking_twin(api.pause_scheduled_job)
resume_scheduled_job_sync = _blocking_twin(api.resume_scheduled_job)
modify_scheduled_job_sync = _blocking_twin(api.modify_scheduled_job)
list_schedules_sync = _blocking_twin(api.list_schedules)
set_limit_sync = _blocking_twin(api.set_limit)
delete_limit_sync = _blocking_twin(api.delete_limit)
list_limits_sync = _blocking_twin(api.list_limits)


class SyncClient:
    """A blocking client holding one connection: ``with naq.SyncClient() as client: ...``.

    Offers every module-level helper as a method without the ``_sync`` suffix and without
    ``nats_url``; ``queue_name=None`` means this client's queue wherever the helper would
    take the default queue. A client left open is closed at interpreter exit.
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
            _open_clients.add(self, conn)

    def close(self) -> None:
        """Close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _open_clients.discard(conn)
            _runner.run(conn.close())

    def _connection(self) -> Connection:
        self.connect()
        assert self._conn is not None
        return self._conn

    def _queue(self, queue_name: str | None = None) -> Queue:
        return Queue(
            self.queue_name if queue_name is None else queue_name,
            connection=self._connection(),
            settings=self.settings,
        )

    # -- enqueue --------------------------------------------------------------------------
    def enqueue(self, func: Any, *args: Any, queue_name: str | None = None, **kwargs: Any) -> Job:
        """Enqueue ``func(*args, **kwargs)`` (from this thread's blocking connection when
        it can, like :func:`enqueue_sync`)."""
        name = self.queue_name if queue_name is None else queue_name
        job = _enqueue_blocking(Queue(name, settings=self.settings), func, args, kwargs)
        if job is not None:
            return job
        return _runner.run(self._queue(queue_name).enqueue(func, *args, **kwargs))

    def enqueue_many(
        self,
        calls: Iterable[Any],
        *,
        queue_name: str | None = None,
        atomic: bool = False,
        **options: Any,
    ) -> list[Job]:
        """Enqueue many ``(func, args, kwargs)`` calls (``atomic=True``: all or none)."""
        queue = self._queue(queue_name)
        return _runner.run(queue.enqueue_many(list(calls), atomic=atomic, **options))

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
        self,
        func: Any,
        *args: Any,
        cron: str | None = None,
        interval: timedelta | float | None = None,
        repeat: int | None = None,
        timezone: str | None = None,
        schedule_id: str | None = None,
        misfire: str = "once",
        queue_name: str | None = None,
        **kwargs: Any,
    ) -> Schedule:
        """Store a recurring schedule (see :func:`naq.schedule`)."""
        queue = self._queue(queue_name)
        return _runner.run(
            queue.schedule(
                func,
                *args,
                cron=cron,
                interval=interval,
                repeat=repeat,
                timezone=timezone,
                schedule_id=schedule_id,
                misfire=misfire,
                **kwargs,
            )
        )

    # -- jobs -----------------------------------------------------------------------------
    def fetch_job_result(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's return value (waits up to ``timeout`` s)."""
        return _runner.run(self._queue().fetch_job_result(job_id, timeout=timeout))

    def get_job_status(self, job_id: str) -> JobStatus:
        """The job's status."""
        return _runner.run(self._queue().get_job_status(job_id))

    def get_job_info(self, job_id: str) -> JobInfo:
        """The job's whole record."""
        return _runner.run(self._queue().get_job_info(job_id))

    # -- queues and workers ---------------------------------------------------------------
    def purge_queue(self, queue_name: str | None = None) -> int:
        """Remove every waiting job of the queue; returns how many."""
        name = validate_queue_name(self.queue_name if queue_name is None else queue_name)
        return _runner.run(admin.purge_queue_jobs(self._connection(), name))

    def pause_queue(self, queue_name: str | None = None) -> None:
        """Pause the queue: no worker starts a job of it until it is resumed (see
        :func:`naq.pause_queue`)."""
        name = validate_queue_name(self.queue_name if queue_name is None else queue_name)
        _runner.run(pausing.pause_queue(self._connection(), name))

    def resume_queue(self, queue_name: str | None = None) -> None:
        """Resume the paused queue: its workers take its jobs again at once (see
        :func:`naq.resume_queue`)."""
        name = validate_queue_name(self.queue_name if queue_name is None else queue_name)
        _runner.run(pausing.resume_queue(self._connection(), name))

    def list_workers(self) -> list[WorkerInfo]:
        """Live workers."""
        return _runner.run(admin.list_workers(self._connection()))

    def list_queues(self) -> list[QueueInfo]:
        """Queues and their counts."""
        return _runner.run(admin.list_queues(self._connection()))

    # -- dead letters ---------------------------------------------------------------------
    def list_dead_letters(
        self, queue_name: str | None = None, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead-letter entries, oldest first (at most ``limit``), of ``queue_name`` or of
        every queue when it is ``None`` (as :func:`naq.list_dead_letters`)."""
        name = None if queue_name is None else validate_queue_name(queue_name)
        return _runner.run(deadletter.list_dead_letters(self._connection(), name, limit))

    def requeue_dead_letter(self, entry_id: int) -> str | None:
        """Run a dead-lettered job again under its original job id; returns that id."""
        return _runner.run(deadletter.requeue_dead_letter(self._connection(), entry_id))

    def requeue_dead_letters(self, queue_name: str | None = None) -> deadletter.BulkRequeue:
        """Requeue every dead letter of ``queue_name`` (of every queue when it is ``None``, as
        :func:`naq.requeue_dead_letters`)."""
        name = None if queue_name is None else validate_queue_name(queue_name)
        return _runner.run(deadletter.requeue_dead_letters(self._connection(), name))

    def purge_dead_letters(self, queue_name: str | None = None) -> int:
        """Remove the dead letters of ``queue_name`` (of every queue when it is ``None``, as
        :func:`naq.purge_dead_letters`); returns how many."""
        name = None if queue_name is None else validate_queue_name(queue_name)
        return _runner.run(deadletter.purge_dead_letters(self._connection(), name))

    # -- schedules ------------------------------------------------------------------------
    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job wherever it is; False if it had finished already."""
        return _runner.run(self._queue().cancel_job(job_id))

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

    # -- shared limits --------------------------------------------------------------------
    def set_limit(
        self, name: str, concurrency: int | None = None, rate: str | None = None
    ) -> LimitSpec:
        """Define (or redefine) the shared limit ``name`` (see :func:`naq.set_limit`)."""
        return _runner.run(limits.set_limit(self._connection(), name, concurrency, rate))

    def delete_limit(self, name: str) -> bool:
        """Delete the limit ``name``; False if it was not defined."""
        return _runner.run(limits.delete_limit(self._connection(), name))

    def list_limits(self) -> list[LimitSpec]:
        """Every defined limit, sorted by name."""
        return _runner.run(limits.list_limits(self._connection()))


class _OpenClients:
    """The connections of :class:`SyncClient` objects, each with its client (weakly), so that
    exit, fork and :func:`close_sync_connections` reach them all: a client dropped without
    ``close()`` is collected, but its connection stays here until it is closed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, tuple[Connection, weakref.ref[SyncClient]]] = {}

    def add(self, client: SyncClient, conn: Connection) -> None:
        with self._lock:
            self._open[id(conn)] = (conn, weakref.ref(client))

    def discard(self, conn: Connection) -> None:
        with self._lock:
            self._open.pop(id(conn), None)

    def take_all(self) -> list[Connection]:
        """Every open connection, now forgotten here and by its client (which opens a new
        one on its next call)."""
        with self._lock:
            found, self._open = list(self._open.values()), {}
        for conn, ref in found:
            client = ref()
            if client is not None and client._conn is conn:
                client._conn = None
        return [conn for conn, _ref in found]

    def reset_after_fork(self) -> None:
        """A fresh lock in a forked child: the old one may be held by a thread that did not
        survive the fork."""
        self._lock = threading.Lock()


_open_clients = _OpenClients()


async def _close_connections() -> None:
    """Close every open :class:`SyncClient`'s connection and the helpers' shared ones."""
    for conn in _open_clients.take_all():
        with contextlib.suppress(Exception):
            await conn.close()
    await api.close()


def close_sync_connections(nats_url: str | None = None) -> None:
    """Close every connection naq's blocking API holds; the next blocking call reconnects.

    That is: the connections of the ``*_sync`` helpers on the shared background loop, those
    of every open :class:`SyncClient` (each reconnects on its next call), and the calling
    thread's own connection of :func:`enqueue_sync`. Another thread's ``enqueue_sync``
    connection closes with that thread, or when it calls this itself.

    For a script that wants to end with its connections closed, or a process about to
    ``fork`` (a pre-fork server) that should not hand its sockets to its children.
    ``nats_url`` is accepted for the original naq's signature: the connections to every
    server are closed.
    """
    del nats_url  # every server's connections are closed
    blocking.close_for_thread()
    loop = _runner.loop
    if loop is not None and not loop.is_closed():
        _runner.run(_close_connections())


def _stop_at_exit() -> None:
    _runner.stop(_close_connections)


#: What a forked child inherited from the parent and keeps, untouched, until it exits: the
#: parent's loop and the connections on it. Collected, the loop could be closed, which
#: unregisters its wake-up pipe from the epoll instance it shares with the parent.
_inherited: list[object] = []


def _after_fork_in_child() -> None:
    """Forget the parent's loop thread, connections and caches: the next call starts anew."""
    _open_clients.reset_after_fork()
    _inherited.extend(_open_clients.take_all())  # the clients reconnect on their next call
    old_loop = _runner.forget_after_fork()
    if old_loop is not None:
        _inherited.extend((old_loop, api.forget_connections(old_loop)))
    _storage_ready.clear()


atexit.register(_stop_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
