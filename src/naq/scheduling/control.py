"""The scheduling API behind ``naq.enqueue_at`` & co. and the ``Queue`` methods.

Control calls take an id that is either a recurring schedule's id or the job id returned by
``enqueue_at``/``enqueue_in``; schedules are looked up first."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, JobNotFoundError
from ..job import Job
from ..names import lookup_job_id
from . import oneoff, recurring
from .models import Schedule
from .recurring import UNSET
from .store import ScheduleStore
from .timeutil import check_when, delay_seconds, run_time_when

if TYPE_CHECKING:
    from ..queue import Queue


def _check_id(schedule_id: object) -> str:
    return lookup_job_id(schedule_id, "scheduled job or schedule", "id")


def _missing(schedule_id: str) -> JobNotFoundError:
    return JobNotFoundError(
        f"no scheduled job or schedule {schedule_id!r} (unknown, already ran, finished, "
        "or cancelled)"
    )


async def enqueue_at(queue: Queue, when: datetime, func: Any, *args: Any, **kwargs: Any) -> Job:
    """Run ``func(*args, **kwargs)`` at ``when`` (naive = UTC); see :func:`naq.enqueue_at`."""
    due = check_when(when)
    return await oneoff.enqueue_at(queue, due, func, args, kwargs)


async def enqueue_in(queue: Queue, delay: Any, func: Any, *args: Any, **kwargs: Any) -> Job:
    """Run ``func(*args, **kwargs)`` after ``delay`` (timedelta or seconds)."""
    seconds = delay_seconds(delay)
    return await oneoff.enqueue_at(queue, time.time() + seconds, func, args, kwargs)


async def schedule(
    queue: Queue,
    func: Any,
    *args: Any,
    cron: str | None = None,
    interval: Any = None,
    repeat: int | None = None,
    timezone: str | None = None,
    schedule_id: str | None = None,
    misfire: str = "once",
    **kwargs: Any,
) -> Schedule:
    """Store a recurring schedule; see :func:`naq.schedule`."""
    return await recurring.create(
        queue,
        func,
        args,
        kwargs,
        cron=cron,
        interval=interval,
        repeat=repeat,
        timezone=timezone,
        schedule_id=schedule_id,
        misfire=misfire,
    )


async def cancel_scheduled_job(queue: Queue, schedule_id: str) -> bool:
    """Cancel a schedule or a waiting one-off job; False if there was nothing to cancel."""
    sid = _check_id(schedule_id)
    conn = await queue.connection()
    if await recurring.cancel(ScheduleStore(conn), sid):
        return True
    return await oneoff.cancel(conn, sid)


async def pause_scheduled_job(queue: Queue, schedule_id: str) -> Schedule:
    """Pause a schedule or a waiting one-off job; returns its new state."""
    sid = _check_id(schedule_id)
    conn = await queue.connection()
    found = await recurring.pause(ScheduleStore(conn), sid)
    if found is not None:
        return found
    return await _one_off(conn, sid, paused=True)


async def resume_scheduled_job(queue: Queue, schedule_id: str) -> Schedule:
    """Resume a paused schedule or one-off job; returns its new state."""
    sid = _check_id(schedule_id)
    conn = await queue.connection()
    found = await recurring.resume(ScheduleStore(conn), sid)
    if found is not None:
        return found
    return await _one_off(conn, sid, paused=False)


async def modify_scheduled_job(
    queue: Queue,
    schedule_id: str,
    *,
    cron: Any = UNSET,
    interval: Any = UNSET,
    timezone: Any = UNSET,
    repeat: Any = UNSET,
    next_run: Any = UNSET,
    misfire: Any = UNSET,
    **original: Any,
) -> Schedule:
    """Change a schedule (rule, repeat, next run, misfire) or move a one-off job's time.

    The original naq's names for two of the changes are taken too: ``interval_seconds``
    (``interval``) and ``scheduled_timestamp_utc`` (epoch seconds: ``next_run``); any other
    name is a :class:`ConfigurationError` listing the known ones, with nothing changed.
    """
    interval, next_run = _original_changes(original, interval, next_run)
    sid = _check_id(schedule_id)
    conn = await queue.connection()
    found = await recurring.modify(
        ScheduleStore(conn),
        sid,
        cron=cron,
        interval=interval,
        timezone=timezone,
        repeat=repeat,
        next_run=next_run,
        misfire=misfire,
    )
    if found is not None:
        return found
    if any(v is not UNSET for v in (cron, interval, timezone, repeat, misfire)):
        one_off, _record = await oneoff.find(conn, sid)
        if one_off is None:
            raise _missing(sid)
        raise ConfigurationError(f"{sid} is a one-off scheduled job: only next_run can be changed")
    if next_run is UNSET:
        return await _one_off(conn, sid)
    return await _one_off(conn, sid, due=run_time_when(next_run))


def _original_changes(original: dict[str, Any], interval: Any, next_run: Any) -> tuple[Any, Any]:
    """``interval`` and ``next_run`` with the original naq's names for them applied."""
    unknown = sorted(set(original) - {"interval_seconds", "scheduled_timestamp_utc"})
    if unknown:
        raise ConfigurationError(
            f"modify_scheduled_job got unknown change(s) {', '.join(map(repr, unknown))}; "
            "known: cron, interval, timezone, repeat, next_run, misfire"
        )
    if "interval_seconds" in original:
        interval = original["interval_seconds"]
    stamp = original.get("scheduled_timestamp_utc")
    if stamp is not None:
        bad = ConfigurationError(
            f"scheduled_timestamp_utc must be epoch seconds, got {stamp!r} "
            "(or pass next_run=datetime)"
        )
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            raise bad
        try:
            next_run = datetime.fromtimestamp(stamp, UTC)
        except (OverflowError, ValueError, OSError):
            raise bad from None
    return interval, next_run


async def _one_off(
    conn: Any, sid: str, *, paused: bool | None = None, due: float | None = None
) -> Schedule:
    return await oneoff.set_state(conn, sid, paused=paused, due=due)


async def list_schedules(
    queue: Queue, *, all_queues: bool = True, limit: int | None = None
) -> list[Schedule]:
    """Recurring schedules and waiting one-off jobs, soonest first."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigurationError(f"limit must be an integer >= 0, got {limit!r}")
    conn = await queue.connection()
    name = None if all_queues else queue.name
    found = await recurring.list_recurring(ScheduleStore(conn), name)
    found += await oneoff.list_one_offs(conn, name)
    found.sort(key=lambda s: s.next_run.timestamp() if s.next_run else math.inf)
    return found[:limit] if limit is not None else found
