"""One-off jobs (``enqueue_at``/``enqueue_in``) as server-side ``@at`` message schedules.

The job envelope is published to ``naq.sched.<queue>.<job_id>`` in the schedules stream
with ``Nats-Schedule: @at <time>`` and ``Nats-Schedule-Target: naq.due.<queue>``; at that
time nats-server itself fires it onto ``naq.due.<queue>``, and the jobs stream, which sources
those subjects, takes it over as ``naq.queue.<queue>``. So no naq process has to run for it
to fire, and it survives restarts. The fired message keeps naq's own headers (signature) and
loses ``Nats-Msg-Id``, so the worker sees a normal job. (Schedules live in a stream of their
own because schedule and rollup headers act on the server: the jobs stream allows neither.)

Cancel purges the schedule subject. Pause republishes the same payload on the same subject
*without* a schedule header (with the due time kept in ``Naq-Paused-Due``); resume and
reschedule republish it with a new ``@at``. Every republish is a compare-and-set on the
subject's last sequence, so it fails instead of resurrecting a job that already fired.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from .. import constants as c
from ..admin import count_scheduled
from ..calls import prepare_call, result_ttl
from ..dependencies import Dependencies
from ..errors import JobNotFoundError, WriteConflictError
from ..job import Job, split_options
from ..messages import job_headers
from ..models import HeldMessage, JobRecord, JobStatus, decode_envelope, encode
from ..results import ResultStore
from ..settings import Settings
from ..transport import Connection, encode_headers, streams
from .models import Schedule, ScheduleStatus
from .records import scheduled_record, scheduled_ttl, update_record
from .timeutil import from_ts, parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from ..queue import Queue

HEADER_SCHEDULE = "Nats-Schedule"
HEADER_SCHEDULE_TARGET = "Nats-Schedule-Target"
HEADER_ROLLUP = "Nats-Rollup"
#: While a one-off job is paused its message carries its due time here instead of a schedule.
HEADER_PAUSED_DUE = "Naq-Paused-Due"
_LIST_CONCURRENCY = 256


async def enqueue_at(
    queue: Queue, due: float, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Job:
    """Store ``func(*args, **kwargs)`` to run at ``due`` (epoch seconds, validated)."""
    options, call_kwargs = split_options(dict(kwargs))
    job, envelope = prepare_call(queue, func, args, call_kwargs, options)
    conn = await queue.connection()
    await conn.ensure_jobs_stream()
    await queue.before_enqueue(job, envelope)
    store = ResultStore(conn)
    ttl = scheduled_ttl(due, result_ttl(envelope, queue.settings.result_ttl))
    record = scheduled_record(job, envelope, due)
    payload = encode(envelope)
    # refuse an over-size job before its record is written (nothing half-stored)
    headers = schedule_headers(
        queue.settings, job.queue_name, job.job_id, payload, due, envelope.priority
    )
    subject = c.schedule_subject(job.queue_name, job.job_id)
    conn.check_message(subject, payload, encode_headers(headers))
    if envelope.depends_on:
        # deferred first; released as this same @at schedule (due now or later)
        held = HeldMessage(
            status=JobStatus.SCHEDULED.value, headers=headers, payload=msgspec.Raw(payload)
        )
        deps = Dependencies(conn, store, queue.settings.result_ttl)
        stored = await deps.defer(envelope, held, next_attempt_at=due)
        job.function, job.queue_name = stored.function, stored.queue_name
        await queue.after_enqueue(job)
        return job
    if options.job_id is None:
        await store.put(record, int(ttl) + 1)
    else:
        existing = await store.create(record, int(ttl) + 1)
        if existing is not None:
            # Known id: run nothing new. Publish again only if an earlier call may have
            # stored the record but not the schedule (the stream drops a repeated Msg-Id).
            retry = (
                existing.status == JobStatus.SCHEDULED.value
                and existing.enqueued_at is not None
                and time.time() - existing.enqueued_at < c.DUPLICATE_WINDOW - 5
            )
            if not retry:
                job.function, job.queue_name = existing.function, existing.queue_name
                return job
    await publish_schedule(conn, headers, job.queue_name, job.job_id, payload)
    await queue.after_enqueue(job)
    return job


def schedule_headers(
    settings: Settings,
    queue_name: str,
    job_id: str,
    payload: bytes,
    due: float,
    priority: int = 0,
) -> dict[str, str]:
    """Headers that make the server deliver ``payload`` to the queue (to the subject of its
    ``priority``) at ``due``."""
    # the server moves the fired message to the queue's subject: the worker sees that one
    headers = job_headers(settings, job_id, payload, subject=c.queue_subject(queue_name, priority))
    headers[HEADER_SCHEDULE] = f"@at {rfc3339(due)}"
    headers[HEADER_SCHEDULE_TARGET] = c.due_subject(queue_name, priority)
    return headers


async def publish_schedule(
    conn: Connection,
    headers: dict[str, str],
    queue_name: str,
    job_id: str,
    payload: bytes,
) -> None:
    """Publish the ``@at`` schedule (``headers`` from :func:`schedule_headers`), retried with
    the same ``Nats-Msg-Id``: stored once."""
    await conn.publish_idempotent(
        c.schedule_subject(queue_name, job_id), payload, headers, f"scheduled job {job_id}"
    )


@dataclass(slots=True)
class OneOff:
    """A one-off job still waiting on its schedule subject."""

    job_id: str
    queue: str
    seq: int
    data: bytes
    headers: dict[str, str]
    due: float
    paused: bool

    @property
    def priority(self) -> int:
        """The job's priority (0 when its payload cannot say)."""
        try:
            priority = decode_envelope(self.data).priority
        except (msgspec.DecodeError, msgspec.ValidationError):
            return 0
        return priority if priority in c.PRIORITY_LEVELS else 0

    def view(self) -> Schedule:
        """The public :class:`Schedule` view."""
        try:
            function = decode_envelope(self.data).fn
        except (msgspec.DecodeError, msgspec.ValidationError):
            function = "?"
        return Schedule(
            schedule_id=self.job_id,
            status=(ScheduleStatus.PAUSED if self.paused else ScheduleStatus.ACTIVE).value,
            cron=None,
            interval=None,
            timezone=None,
            repeat=1,
            runs=0,
            next_run=from_ts(self.due),
            queue_name=self.queue,
            function=function,
            one_off=True,
        )


def _due_of(headers: dict[str, str]) -> tuple[float, bool] | None:
    pattern = headers.get(HEADER_SCHEDULE, "")
    if pattern.startswith("@at "):
        return parse_rfc3339(pattern[4:]), False
    paused = headers.get(HEADER_PAUSED_DUE)
    if paused:
        return parse_rfc3339(paused), True
    return None


async def read_subject(conn: Connection, subject: str) -> OneOff | None:
    """The one-off stored on ``subject`` (``naq.sched.<queue>.<job_id>``), if any."""
    msg = await streams.get_message(conn, c.SCHEDULES_STREAM, subject=subject, direct=True)
    if msg is None:
        return None
    headers = dict(msg.headers)
    found = _due_of(headers)
    if found is None or not msg.seq:
        return None
    queue, _, job_id = subject.removeprefix(c.SCHEDULE_SUBJECT_PREFIX).partition(".")
    return OneOff(job_id, queue, msg.seq, msg.data, headers, *found)


async def find(conn: Connection, job_id: str) -> tuple[OneOff | None, JobRecord | None]:
    """The waiting one-off ``job_id`` and its record (its queue comes from the record)."""
    record = await ResultStore(conn).get(job_id)
    if record is None or record.schedule_id is not None:
        return None, record
    await conn.ensure_jobs_stream()
    return await read_subject(conn, c.schedule_subject(record.queue_name, job_id)), record


async def purge_subject(conn: Connection, subject: str) -> int:
    """Remove every message on ``subject``; returns how many were removed."""
    return await streams.purge(conn, c.SCHEDULES_STREAM, subject)


async def cancel(conn: Connection, job_id: str) -> bool:
    """Cancel a waiting one-off: it never runs. False if it already fired or is unknown."""
    one_off, record = await find(conn, job_id)
    if one_off is None or record is None:
        return False
    if await purge_subject(conn, c.schedule_subject(one_off.queue, job_id)) == 0:
        return False  # fired in the meantime

    def cancelled(rec: JobRecord) -> JobRecord | None:
        if rec.status != JobStatus.SCHEDULED.value:
            return None
        rec.status = JobStatus.CANCELLED.value
        rec.finished_at = time.time()
        rec.next_attempt_at = None
        return rec

    await update_record(conn, job_id, cancelled, _ttl_of(one_off, conn.settings, time.time()))
    return True


def _ttl_of(one_off: OneOff, settings: Settings, due: float | None) -> float | str:
    try:
        keep = result_ttl(decode_envelope(one_off.data), settings.result_ttl)
    except (msgspec.DecodeError, msgspec.ValidationError):
        keep = settings.result_ttl
    return "never" if due is None else scheduled_ttl(due, keep) + 1


async def _republish(conn: Connection, one_off: OneOff, due: float, paused: bool) -> OneOff:
    """Replace the stored message by itself with a new due time or pause state (CAS)."""
    headers = {k: v for k, v in one_off.headers.items() if not k.startswith("Nats-")}
    headers.pop(HEADER_PAUSED_DUE, None)
    if paused:
        headers[HEADER_PAUSED_DUE] = rfc3339(due)
    else:
        headers[HEADER_SCHEDULE] = f"@at {rfc3339(due)}"
        headers[HEADER_SCHEDULE_TARGET] = c.due_subject(one_off.queue, one_off.priority)
    headers[HEADER_ROLLUP] = "sub"
    headers[c.HEADER_EXPECTED_LAST_SUBJECT_SEQ] = str(one_off.seq)
    subject = c.schedule_subject(one_off.queue, one_off.job_id)
    try:
        seq = await conn.publish(subject, one_off.data, headers)
    except WriteConflictError:
        raise JobNotFoundError(
            f"scheduled job {one_off.job_id} changed or ran meanwhile; nothing was changed"
        ) from None
    del headers[c.HEADER_EXPECTED_LAST_SUBJECT_SEQ]
    return OneOff(one_off.job_id, one_off.queue, seq, one_off.data, headers, due, paused)


async def set_state(
    conn: Connection, job_id: str, *, paused: bool | None = None, due: float | None = None
) -> Schedule:
    """Pause, resume or reschedule a waiting one-off job; returns its new view."""
    one_off, _record = await find(conn, job_id)
    if one_off is None:
        raise JobNotFoundError(
            f"no scheduled job or schedule {job_id!r} (unknown, already ran, or cancelled)"
        )
    want_paused = one_off.paused if paused is None else paused
    want_due = one_off.due if due is None else due
    if want_paused == one_off.paused and want_due == one_off.due:
        return one_off.view()
    updated = await _republish(conn, one_off, want_due, want_paused)

    def moved(rec: JobRecord) -> JobRecord | None:
        if rec.status != JobStatus.SCHEDULED.value:
            return None
        rec.next_attempt_at = want_due
        return rec

    ttl = _ttl_of(updated, conn.settings, None if want_paused else want_due)
    await update_record(conn, job_id, moved, ttl)
    return updated.view()


async def count_waiting(conn: Connection, queue: str | None = None) -> int:
    """How many one-off jobs wait on their time (of ``queue``, or all), paused included."""
    return await count_scheduled(conn, queue)


async def list_one_offs(
    conn: Connection, queue: str | None = None, limit: int | None = None
) -> list[Schedule]:
    """Waiting one-off jobs (all queues, or ``queue``), up to ``limit``, soonest first."""
    await conn.ensure_jobs_stream()
    prefix = c.SCHEDULE_SUBJECT_PREFIX + (f"{queue}." if queue else "")
    subjects = sorted(await streams.subject_counts(conn, c.SCHEDULES_STREAM, f"{prefix}>"))
    found: list[Schedule] = []
    for start in range(0, len(subjects), _LIST_CONCURRENCY):
        chunk = subjects[start : start + _LIST_CONCURRENCY]
        for item in await asyncio.gather(*(read_subject(conn, s) for s in chunk)):
            if item is not None:
                found.append(item.view())
    found.sort(key=lambda s: (s.next_run is None, s.next_run))
    return found[:limit] if limit is not None else found
