"""Recurring schedules (``schedule(func, cron=... | interval=...)``): validation, creation
and every change users make (pause, resume, cancel, modify), each a compare-and-set."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from .. import names
from ..calls import prepare_call
from ..errors import ConfigurationError, WriteConflictError
from ..job import split_options
from .misfire import check_policy
from .models import Schedule, ScheduleRecord, ScheduleStatus
from .recurrence import Recurrence
from .store import DELETE, ScheduleStore
from .timeutil import run_time_when

if TYPE_CHECKING:
    from ..queue import Queue


class Unset:
    """Marker for "argument not given" (``None`` is a meaningful value for some)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = Unset()


def check_schedule_id(schedule_id: object) -> str:
    """A valid schedule id (the rule: :func:`naq.names.check_schedule_id`)."""
    return names.check_schedule_id(schedule_id)


def check_repeat(repeat: object) -> int | None:
    """``None`` (forever) or a number of runs >= 1."""
    if repeat is None:
        return None
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ConfigurationError(
            f"repeat must be None (forever) or an integer >= 1, got {repeat!r}"
        )
    return repeat


def split_expiry(kwargs: dict[str, Any]) -> float | None:
    """Seconds after its run time each run expires, from ``expires`` in ``kwargs`` (left
    there for :func:`~naq.job.split_options` to check as seconds); ``None`` if not given.

    A recurring schedule has no single moment to expire at, so a datetime is refused."""
    expires = kwargs.get("expires")
    if expires is None:
        return None
    if isinstance(expires, datetime):
        raise ConfigurationError(
            "give schedule() expires= as seconds or a timedelta: each run expires that long "
            f"after its time (got the datetime {expires!r})"
        )
    if isinstance(expires, timedelta):
        return expires.total_seconds()
    if isinstance(expires, int | float) and not isinstance(expires, bool):
        return float(expires)
    return None  # not a number: split_options names what is wrong with it


async def create(
    queue: Queue,
    func: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    cron: object = None,
    interval: object = None,
    repeat: object = None,
    timezone: object = None,
    schedule_id: object = None,
    misfire: object = "once",
) -> Schedule:
    """Validate everything, then store the schedule (nothing is stored on bad input).

    An existing schedule with the same id and the same definition is returned unchanged
    (safe to call at every start-up); a different definition replaces the old one, keeping
    its run count and pause state. ``expires`` (seconds or a timedelta) makes each run
    expire that long after its run time.
    """
    call = dict(kwargs)
    expires_after = split_expiry(call)
    options, call_kwargs = split_options(call)  # checks expires= as seconds
    options = dataclasses.replace(options, expires_at=None)  # each run gets its own
    if options.job_id is not None:
        raise ConfigurationError(
            "schedule() takes schedule_id, not job_id: every run gets its own id"
        )
    if options.depends_on or options.allow_failure:
        raise ConfigurationError(
            "schedule() does not take depends_on/allow_failure: a recurring run cannot wait "
            "for one job; enqueue the dependent work from the scheduled job instead"
        )
    sid = uuid.uuid4().hex if schedule_id is None else check_schedule_id(schedule_id)
    runs_wanted = check_repeat(repeat)
    policy = check_policy(misfire)
    now = time.time()
    rule = Recurrence.build(cron, interval, timezone, anchor=now)
    _job, template = prepare_call(
        queue, func, args, call_kwargs, options, job_id=sid, schedule_id=sid
    )
    record = ScheduleRecord(
        schedule_id=sid,
        queue=queue.name,
        template=template,
        cron=rule.cron,
        interval=rule.interval,
        timezone=rule.timezone,
        anchor=rule.anchor,
        repeat=runs_wanted,
        misfire=policy,
        expires_after=expires_after,
        next_run=rule.next_after(now),
        created_at=now,
        updated_at=now,
    )
    store = ScheduleStore(await queue.connection())
    await store.ready()
    for _ in range(20):
        found = await store.get(sid)
        if found is None:
            revision = 0
            new = record
        else:
            old, revision = found
            if old.status != ScheduleStatus.DONE.value and old.same_definition(record):
                return Schedule.from_record(old)
            new = record
            if old.status != ScheduleStatus.DONE.value:
                new = msgspec.structs.replace(
                    record,
                    runs=old.runs,
                    last_run=old.last_run,
                    claimed_at=old.claimed_at,
                    status=old.status,
                    created_at=old.created_at,
                )
        try:
            await store.write(new, revision)
        except WriteConflictError:
            continue
        return Schedule.from_record(new)
    raise ConfigurationError(f"schedule {sid} kept changing while it was being stored")


async def pause(store: ScheduleStore, schedule_id: str) -> Schedule | None:
    """Pause: no run is enqueued until resumed. ``None`` if there is no such schedule."""

    def change(rec: ScheduleRecord) -> ScheduleRecord | None:
        if rec.status != ScheduleStatus.ACTIVE.value:
            return None
        return msgspec.structs.replace(
            rec, status=ScheduleStatus.PAUSED.value, updated_at=time.time()
        )

    record, existed = await store.mutate(schedule_id, change)
    return Schedule.from_record(record) if existed and record is not None else None


async def resume(store: ScheduleStore, schedule_id: str) -> Schedule | None:
    """Resume a paused schedule from its next run time after now (no catch-up for the pause)."""

    def change(rec: ScheduleRecord) -> ScheduleRecord | None:
        if rec.status != ScheduleStatus.PAUSED.value:
            return None
        now = time.time()
        return msgspec.structs.replace(
            rec,
            status=ScheduleStatus.ACTIVE.value,
            next_run=rec.rule.next_after(now),
            updated_at=now,
        )

    record, existed = await store.mutate(schedule_id, change)
    return Schedule.from_record(record) if existed and record is not None else None


async def cancel(store: ScheduleStore, schedule_id: str) -> bool:
    """Delete the schedule; runs already enqueued are not touched. False if unknown."""
    _record, existed = await store.mutate(schedule_id, lambda _rec: DELETE)
    return existed


async def modify(
    store: ScheduleStore,
    schedule_id: str,
    *,
    cron: Any = UNSET,
    interval: Any = UNSET,
    timezone: Any = UNSET,
    repeat: Any = UNSET,
    next_run: Any = UNSET,
    misfire: Any = UNSET,
) -> Schedule | None:
    """Change a schedule's rule, repeat count, next run time or misfire policy.

    Giving ``cron`` replaces an interval and vice versa. A new rule without ``next_run``
    starts from now. Everything is validated before anything is written.
    """
    found = await store.get_live(schedule_id)
    if found is None:
        return None
    current = found[0]
    policy = current.misfire if misfire is UNSET else check_policy(misfire)
    runs_wanted = current.repeat if repeat is UNSET else check_repeat(repeat)
    when = None if next_run is UNSET else run_time_when(next_run)
    new_rule: Recurrence | None = None
    if cron is not UNSET or interval is not UNSET or timezone is not UNSET:
        if cron is not UNSET and cron is not None and interval not in (UNSET, None):
            raise ConfigurationError("give exactly one of cron=... or interval=...")
        if cron not in (UNSET, None):
            new_cron, new_interval = cron, None
        elif interval not in (UNSET, None):
            new_cron, new_interval = None, interval
        else:
            new_cron, new_interval = current.cron, current.interval
        zone = (
            (current.timezone if new_cron is not None else None) if timezone is UNSET else timezone
        )
        anchor = when if when is not None else time.time()
        new_rule = Recurrence.build(new_cron, new_interval, zone, anchor=anchor)

    def change(rec: ScheduleRecord) -> ScheduleRecord:
        if runs_wanted is not None and runs_wanted <= rec.runs:
            raise ConfigurationError(
                f"repeat={runs_wanted} but schedule {schedule_id} already ran {rec.runs} times; "
                "cancel it instead"
            )
        now = time.time()
        rule = new_rule or rec.rule
        if when is not None and rule.interval is not None:
            rule = Recurrence(interval=rule.interval, anchor=when)
        if when is not None:
            upcoming: float | None = when
        elif new_rule is not None:
            upcoming = rule.next_after(now)
        else:
            upcoming = rec.next_run
        return msgspec.structs.replace(
            rec,
            cron=rule.cron,
            interval=rule.interval,
            timezone=rule.timezone,
            anchor=rule.anchor,
            repeat=runs_wanted,
            misfire=policy,
            next_run=upcoming,
            updated_at=now,
        )

    record, existed = await store.mutate(schedule_id, change)
    return Schedule.from_record(record) if existed and record is not None else None


async def list_recurring(store: ScheduleStore, queue: str | None = None) -> list[Schedule]:
    """Active and paused recurring schedules (of ``queue``, or all)."""
    return [
        Schedule.from_record(rec)
        for rec, _rev in await store.all()
        if rec.status != ScheduleStatus.DONE.value and (queue is None or rec.queue == queue)
    ]
