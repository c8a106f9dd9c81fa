"""Module-level async helpers (``naq.enqueue``, ``naq.fetch_job_result``...).

They share one connection per event loop and URL, opened on first use and kept open (close
them with :func:`close`); each call reads the environment, so settings changes apply."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import admin, deadletter, limits, pausing
from .deadletter import DeadLetter
from .info import JobInfo, QueueInfo, WorkerInfo
from .job import Job
from .limits import LimitSpec
from .models import JobStatus
from .queue import Queue
from .settings import Settings, load_settings, validate_queue_name
from .transport import Connection

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from .scheduling import Schedule

_connections: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[object, ...], Connection]
] = weakref.WeakKeyDictionary()


async def shared_connection(
    nats_url: str | None = None, settings: Settings | None = None
) -> Connection:
    """The connection helpers share on this event loop for ``nats_url``."""
    settings = settings or load_settings(nats_url)
    loop = asyncio.get_running_loop()
    per_loop = _connections.setdefault(loop, {})
    key = settings.login
    conn = per_loop.get(key)
    if conn is None or conn.dead:
        conn = Connection(settings, name="naq-client")
        per_loop[key] = conn
    return await conn.connect()


async def _queue(queue_name: str | None, nats_url: str | None) -> Queue:
    settings = load_settings(nats_url)
    conn = await shared_connection(settings=settings)
    return Queue(queue_name, connection=conn, settings=settings)


async def close() -> None:
    """Close the connections the module-level helpers opened on this event loop."""
    per_loop = _connections.pop(asyncio.get_running_loop(), {})
    for conn in per_loop.values():
        await conn.close()


def forget_connections(loop: asyncio.AbstractEventLoop) -> list[Connection]:
    """Drop, without closing, the connections the helpers opened on ``loop``; returns them.

    For a forked child: they belong to the parent (their sockets, their loop), and the
    child's next call opens its own."""
    return list(_connections.pop(loop, {}).values())


def _queue_filter(queue_name: str | None) -> str | None:
    """``None`` (every queue) or a valid queue name: an empty name is refused, never read
    as "every queue"."""
    return None if queue_name is None else validate_queue_name(queue_name)


def _queue_name(queue_name: str | None, nats_url: str | None) -> str:
    """``queue_name``, or the default queue when it is ``None``; checked."""
    if queue_name is None:
        return validate_queue_name(load_settings(nats_url).default_queue)
    return validate_queue_name(queue_name)


async def enqueue(
    func: Any,
    *args: Any,
    queue_name: str | None = None,
    nats_url: str | None = None,
    **kwargs: Any,
) -> Job:
    """Enqueue ``func(*args, **kwargs)`` on ``queue_name`` (default ``NAQ_DEFAULT_QUEUE``)."""
    return await (await _queue(queue_name, nats_url)).enqueue(func, *args, **kwargs)


async def enqueue_many(
    calls: Iterable[Any],
    *,
    queue_name: str | None = None,
    nats_url: str | None = None,
    atomic: bool = False,
    **options: Any,
) -> list[Job]:
    """Enqueue many ``(func, args, kwargs)`` calls with pipelined publishes; ``atomic=True``
    stores all of them or none (at most 1000)."""
    queue = await _queue(queue_name, nats_url)
    return await queue.enqueue_many(calls, atomic=atomic, **options)


async def fetch_job_result(
    job_id: str, timeout: float | None = None, *, nats_url: str | None = None
) -> Any:
    """Return value of a finished job, waiting up to ``timeout`` s for it to finish."""
    return await (await _queue(None, nats_url)).fetch_job_result(job_id, timeout=timeout)


async def get_job_status(job_id: str, *, nats_url: str | None = None) -> JobStatus:
    """Status of ``job_id``; raises :class:`~naq.JobNotFoundError` if unknown."""
    return await (await _queue(None, nats_url)).get_job_status(job_id)


async def get_job_info(job_id: str, *, nats_url: str | None = None) -> JobInfo:
    """The whole record of ``job_id``; raises :class:`~naq.JobNotFoundError` if unknown."""
    return await (await _queue(None, nats_url)).get_job_info(job_id)


async def purge_queue(queue_name: str | None = None, *, nats_url: str | None = None) -> int:
    """Remove every waiting job of ``queue_name``; returns how many were removed."""
    conn = await shared_connection(nats_url)
    name = validate_queue_name(
        load_settings(nats_url).default_queue if queue_name is None else queue_name
    )
    return await admin.purge_queue_jobs(conn, name)


async def pause_queue(queue_name: str | None = None, *, nats_url: str | None = None) -> None:
    """Pause ``queue_name`` (default ``NAQ_DEFAULT_QUEUE``): no worker starts a job of it, of
    any priority, until :func:`resume_queue`; jobs running now finish as usual. The pause
    is kept by NATS (the queue's consumers are paused), so workers started or restarted
    meanwhile take nothing either. Pausing a paused queue changes nothing; a queue no
    worker has taken jobs from yet is paused all the same (it is created paused). A bad
    name raises :class:`~naq.ConfigurationError`."""
    name = _queue_name(queue_name, nats_url)
    await pausing.pause_queue(await shared_connection(nats_url), name)


async def resume_queue(queue_name: str | None = None, *, nats_url: str | None = None) -> None:
    """Resume a paused ``queue_name`` (default ``NAQ_DEFAULT_QUEUE``): its workers take its
    jobs again at once. Resuming a running queue changes nothing; a queue that was never
    paused and that no worker has taken jobs from (a misspelt name?) raises
    :class:`~naq.ConfigurationError`, as does a bad name."""
    name = _queue_name(queue_name, nats_url)
    await pausing.resume_queue(await shared_connection(nats_url), name)


async def list_workers(*, nats_url: str | None = None) -> list[WorkerInfo]:
    """The workers alive now (their records expire a few heartbeats after they die)."""
    return await admin.list_workers(await shared_connection(nats_url))


async def list_queues(*, nats_url: str | None = None) -> list[QueueInfo]:
    """Every queue that has a consumer, with waiting/running counts and its workers."""
    return await admin.list_queues(await shared_connection(nats_url))


async def list_dead_letters(
    queue_name: str | None = None, *, limit: int = 100, nats_url: str | None = None
) -> list[DeadLetter]:
    """Dead-letter entries, oldest first (at most ``limit``), of ``queue_name`` or of every
    queue when it is ``None``."""
    name = _queue_filter(queue_name)
    return await deadletter.list_dead_letters(await shared_connection(nats_url), name, limit)


async def requeue_dead_letter(entry_id: int, *, nats_url: str | None = None) -> str | None:
    """Run a dead-lettered job again under its original job id; returns that id."""
    return await deadletter.requeue_dead_letter(await shared_connection(nats_url), entry_id)


async def requeue_dead_letters(
    queue_name: str | None = None, *, nats_url: str | None = None
) -> deadletter.BulkRequeue:
    """Requeue every dead letter of ``queue_name`` (of every queue when it is ``None``),
    oldest first, each under its original job id; those that cannot be requeued stay and
    are listed in the result's ``skipped``."""
    name = _queue_filter(queue_name)
    return await deadletter.requeue_dead_letters(await shared_connection(nats_url), name)


async def purge_dead_letters(queue_name: str | None = None, *, nats_url: str | None = None) -> int:
    """Remove the dead letters of ``queue_name`` (of every queue when it is ``None``);
    returns how many."""
    name = _queue_filter(queue_name)
    return await deadletter.purge_dead_letters(await shared_connection(nats_url), name)


# -- shared limits (see naq.limits) --------------------------------------------------------
async def set_limit(
    name: str,
    concurrency: int | None = None,
    rate: str | None = None,
    *,
    nats_url: str | None = None,
) -> LimitSpec:
    """Define (or redefine) the limit ``name``, shared by every worker: at most
    ``concurrency`` jobs taking it run at once, at most ``rate`` (``"100/s"``, ``"10/m"``,
    ``"500/h"``) start per time unit. ``"user:*"`` defines a family (each ``user:<x>`` its
    own limit); ``"queue:<name>"`` limits a whole queue. Bad input raises
    :class:`~naq.ConfigurationError` and stores nothing."""
    return await limits.set_limit(await shared_connection(nats_url), name, concurrency, rate)


async def delete_limit(name: str, *, nats_url: str | None = None) -> bool:
    """Delete the limit ``name`` (jobs taking it run unlimited by it); False if undefined."""
    return await limits.delete_limit(await shared_connection(nats_url), name)


async def list_limits(*, nats_url: str | None = None) -> list[LimitSpec]:
    """Every defined limit, sorted by name."""
    return await limits.list_limits(await shared_connection(nats_url))


# -- scheduling (see naq.scheduling) ------------------------------------------------------
async def enqueue_at(
    when: datetime,
    func: Any,
    *args: Any,
    queue_name: str | None = None,
    nats_url: str | None = None,
    **kwargs: Any,
) -> Job:
    """Run ``func(*args, **kwargs)`` at ``when`` (naive = UTC). nats-server fires it by itself
    (no ``naq scheduler`` needed); a time in the past runs at once."""
    return await (await _queue(queue_name, nats_url)).enqueue_at(when, func, *args, **kwargs)


async def enqueue_in(
    delay: timedelta | float,
    func: Any,
    *args: Any,
    queue_name: str | None = None,
    nats_url: str | None = None,
    **kwargs: Any,
) -> Job:
    """Run ``func(*args, **kwargs)`` after ``delay`` (timedelta or seconds)."""
    return await (await _queue(queue_name, nats_url)).enqueue_in(delay, func, *args, **kwargs)


async def schedule(
    func: Any,
    *args: Any,
    cron: str | None = None,
    interval: timedelta | float | None = None,
    repeat: int | None = None,
    timezone: str | None = None,
    schedule_id: str | None = None,
    misfire: str = "once",
    queue_name: str | None = None,
    nats_url: str | None = None,
    **kwargs: Any,
) -> Schedule:
    """Run ``func(*args, **kwargs)`` on a ``cron`` rule (5 fields, or 6 with seconds first)
    in ``timezone``, or every ``interval``; ``repeat`` runs (None = forever). Each run is a
    new job with its own id; ``expires=`` (seconds or a timedelta) drops a run not started
    that long after its time. Needs a running ``naq scheduler``."""
    return await (await _queue(queue_name, nats_url)).schedule(
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


async def cancel_job(job_id: str, *, nats_url: str | None = None) -> bool:
    """Cancel a job wherever it is (see :meth:`naq.Queue.cancel_job`); False if it had
    finished already."""
    return await (await _queue(None, nats_url)).cancel_job(job_id)


async def cancel_scheduled_job(schedule_id: str, *, nats_url: str | None = None) -> bool:
    """Cancel a schedule, or an ``enqueue_at`` job that has not run; False if none was."""
    return await (await _queue(None, nats_url)).cancel_scheduled_job(schedule_id)


async def pause_scheduled_job(schedule_id: str, *, nats_url: str | None = None) -> Schedule:
    """Pause a schedule or a waiting ``enqueue_at`` job."""
    return await (await _queue(None, nats_url)).pause_scheduled_job(schedule_id)


async def resume_scheduled_job(schedule_id: str, *, nats_url: str | None = None) -> Schedule:
    """Resume a paused schedule or ``enqueue_at`` job."""
    return await (await _queue(None, nats_url)).resume_scheduled_job(schedule_id)


async def modify_scheduled_job(
    schedule_id: str, *, nats_url: str | None = None, **changes: Any
) -> Schedule:
    """Change ``cron``, ``interval``, ``timezone``, ``repeat``, ``next_run`` or ``misfire``
    of a schedule (only ``next_run`` of an ``enqueue_at`` job)."""
    return await (await _queue(None, nats_url)).modify_scheduled_job(schedule_id, **changes)


async def list_schedules(
    *, queue_name: str | None = None, nats_url: str | None = None, limit: int | None = None
) -> list[Schedule]:
    """Recurring schedules and waiting ``enqueue_at`` jobs (of every queue unless
    ``queue_name`` is given), soonest first."""
    if queue_name is not None:
        return await (await _queue(queue_name, nats_url)).list_schedules(limit=limit)
    from .scheduling import list_schedules as _list

    return await _list(await _queue(None, nats_url), all_queues=True, limit=limit)
