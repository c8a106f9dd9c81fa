"""Storage and public shapes of schedules. Stored as JSON (msgspec) in the ``naq_schedules``
bucket, never pickled; unknown fields are ignored so naq versions can read each other's data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

import msgspec

from ..mapping import AliasReader, MappingView
from ..models import JobEnvelope
from .recurrence import Recurrence
from .timeutil import from_ts

SCHEDULE_VERSION = 1


class ScheduleStatus(StrEnum):
    """Where a schedule is in its life (``done`` records linger briefly, then expire)."""

    ACTIVE = "active"
    PAUSED = "paused"
    DONE = "done"


class ScheduleRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One recurring schedule as stored under its id.

    ``template`` is the job envelope every run copies (arguments already codec-encoded);
    each run gets its own ``id``, ``enqueued_at`` and this ``schedule_id``, and, when
    ``expires_after`` is set, an ``expires_at`` that many seconds after its run time.
    """

    v: int = SCHEDULE_VERSION
    schedule_id: str
    queue: str
    template: JobEnvelope
    cron: str | None = None
    interval: float | None = None
    timezone: str | None = None
    anchor: float = 0.0
    repeat: int | None = None
    runs: int = 0
    status: str = ScheduleStatus.ACTIVE.value
    misfire: str = "once"
    #: seconds after its run time a run not started by then expires (``None``: never);
    #: records stored before this field existed read as ``None``
    expires_after: float | None = None
    next_run: float | None = None
    last_run: float | None = None
    claimed_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def rule(self) -> Recurrence:
        """The cron or interval rule."""
        return Recurrence(
            cron=self.cron, interval=self.interval, timezone=self.timezone, anchor=self.anchor
        )

    def same_definition(self, other: ScheduleRecord) -> bool:
        """True when ``other`` schedules the same call the same way (ignoring run state)."""
        mine = msgspec.structs.replace(self.template, enqueued_at=0.0)
        theirs = msgspec.structs.replace(other.template, enqueued_at=0.0)
        return mine == theirs and (
            self.queue,
            self.cron,
            self.interval,
            self.timezone,
            self.repeat,
            self.misfire,
            self.expires_after,
        ) == (
            other.queue,
            other.cron,
            other.interval,
            other.timezone,
            other.repeat,
            other.misfire,
            other.expires_after,
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ScheduleRecord)


def encode_schedule(record: ScheduleRecord) -> bytes:
    """JSON bytes of a schedule record."""
    return _encoder.encode(record)


def decode_schedule(data: bytes) -> ScheduleRecord:
    """Parse a schedule record (raises msgspec errors on bad input)."""
    return _decoder.decode(data)


@dataclass(frozen=True, slots=True)
class Schedule(MappingView):
    """A schedule as users see it (``list_schedules``, ``schedule``, ``pause_scheduled_job``...).

    Recurring schedules have ``cron`` or ``interval``; a job from ``enqueue_at``/``enqueue_in``
    shows up with ``one_off=True``, its job id as ``schedule_id`` and ``repeat=1``.

    Also a read-only mapping with the original naq's schedule keys as aliases: ``job_id``
    (see :attr:`job_id`), ``interval_seconds`` (``interval``), ``next_run_utc`` and
    ``scheduled_timestamp_utc`` (``next_run``), ``last_enqueued_utc`` (``last_run``); in
    the mapping and ``to_dict()`` times are epoch seconds (see
    :class:`~naq.mapping.MappingView`).
    """

    ALIASES: ClassVar[Mapping[str, AliasReader]] = {
        "job_id": lambda s: s.schedule_id,
        "interval_seconds": lambda s: s.interval,
        "next_run_utc": lambda s: s.next_run,
        "scheduled_timestamp_utc": lambda s: s.next_run,
        "last_enqueued_utc": lambda s: s.last_run,
    }

    schedule_id: str
    status: str
    cron: str | None
    interval: float | None
    timezone: str | None
    repeat: int | None
    runs: int
    next_run: datetime | None
    queue_name: str
    function: str
    misfire: str = "once"
    last_run: datetime | None = None
    one_off: bool = False

    @property
    def job_id(self) -> str:
        """The id the original naq's ``schedule()`` gave back as ``job.job_id``: the
        ``schedule_id``. For a one-off (``enqueue_at``/``enqueue_in``) job that is the
        job's own id. A recurring schedule is not one job: each run is a new job with its
        own id and ``schedule_id`` set to this one, so this id is what cancels, pauses,
        resumes or modifies the schedule (``cancel_scheduled_job(schedule.job_id)``), as
        with the original."""
        return self.schedule_id

    @property
    def id(self) -> str:
        """The ``schedule_id`` (the original naq's examples read ``schedule.id``)."""
        return self.schedule_id

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> Schedule:
        """The public view of a stored recurring schedule."""
        return cls(
            schedule_id=record.schedule_id,
            status=record.status,
            cron=record.cron,
            interval=record.interval,
            timezone=record.timezone,
            repeat=record.repeat,
            runs=record.runs,
            next_run=from_ts(record.next_run),
            queue_name=record.queue,
            function=record.template.fn,
            misfire=record.misfire,
            last_run=from_ts(record.last_run),
        )
