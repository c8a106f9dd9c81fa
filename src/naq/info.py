"""What naq's listings and job lookups return: :class:`JobInfo` (with its
:class:`AttemptInfo` list), :class:`WorkerInfo` and :class:`QueueInfo`, built from the stored
records. Each is typed and frozen, and also a read-only mapping with the original naq's keys
(:class:`~naq.mapping.MappingView`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from .codec import from_wire
from .mapping import AliasReader, MappingView
from .models import AttemptRecord, JobRecord, JobStatus, WorkerRecord
from .utctime import from_epoch


def _epoch_span_ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() * 1000.0)


@dataclass(frozen=True, slots=True)
class AttemptInfo(MappingView):
    """One attempt at running a job (times are aware UTC datetimes).

    Also a read-only mapping (``attempt["worker_id"]``, ``to_dict()``; times as epoch
    seconds there), see :class:`~naq.mapping.MappingView`.
    """

    ALIASES: ClassVar[Mapping[str, AliasReader]] = {"duration": lambda a: a.duration}

    attempt: int
    worker_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error_type: str | None
    error: str | None
    #: the attempt's traceback; a worker keeps it for the latest attempt only
    traceback: str | None = None

    @classmethod
    def from_record(cls, record: AttemptRecord) -> AttemptInfo:
        """Build from the stored attempt (epoch seconds become UTC datetimes)."""
        return cls(
            attempt=record.attempt,
            worker_id=record.worker_id,
            started_at=from_epoch(record.started_at),
            finished_at=from_epoch(record.finished_at),
            error_type=record.error_type,
            error=record.error,
            traceback=record.traceback,
        )

    @property
    def duration(self) -> float | None:
        """Seconds the attempt ran, or ``None`` while it runs (or if it never started)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


def _latest_traceback(info: JobInfo) -> str | None:
    return info.attempts[-1].traceback if info.attempts else None


@dataclass(frozen=True, slots=True)
class JobInfo(MappingView):
    """Everything naq knows about a job (``get_job_info``).

    Times are aware UTC datetimes (``None`` when it has not happened); ``next_attempt_at`` is
    when a scheduled job or a retry is due; ``expires_at`` is when a job not started by then
    is cancelled as expired (``None``: never).

    Also a read-only mapping with the original naq's result keys as aliases:
    ``start_time``/``finish_time`` (``started_at``/``finished_at``), ``duration_ms`` and
    ``traceback`` (the latest attempt's); in the mapping and ``to_dict()`` times are epoch
    seconds and ``status`` its string value (see :class:`~naq.mapping.MappingView`).
    """

    ALIASES: ClassVar[Mapping[str, AliasReader]] = {
        "start_time": lambda j: j.started_at,
        "finish_time": lambda j: j.finished_at,
        "duration_ms": lambda j: _epoch_span_ms(j.started_at, j.finished_at),
        "traceback": _latest_traceback,
    }

    job_id: str
    status: JobStatus
    queue_name: str
    function: str
    attempts: list[AttemptInfo]
    worker_id: str | None
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    depends_on: list[str]
    progress: float
    progress_message: str | None
    schedule_id: str | None
    error_type: str | None = None
    error: str | None = None
    max_retries: int = 0
    next_attempt_at: datetime | None = None
    waiting_on: list[str] = dataclasses.field(default_factory=list)
    allow_failure: bool = False
    #: the shared limit a waiting job waits for (``limit user:42 (concurrency 1 reached)``)
    waiting_for: str | None = None
    expires_at: datetime | None = None
    #: the call's arguments (as the function gets them), when the record keeps them: a job
    #: whose message is at most 4 KB and not pickled; ``None`` otherwise
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None

    @classmethod
    def from_record(cls, record: JobRecord) -> JobInfo:
        """Build from the stored record (epoch seconds become UTC datetimes)."""
        return cls(
            job_id=record.job_id,
            status=JobStatus(record.status),
            queue_name=record.queue_name,
            function=record.function,
            attempts=[AttemptInfo.from_record(a) for a in record.attempts],
            worker_id=record.worker_id,
            enqueued_at=from_epoch(record.enqueued_at),
            started_at=from_epoch(record.started_at),
            finished_at=from_epoch(record.finished_at),
            depends_on=list(record.depends_on),
            progress=record.progress,
            progress_message=record.progress_message,
            schedule_id=record.schedule_id,
            error_type=record.error_type,
            error=record.error,
            max_retries=record.max_retries,
            next_attempt_at=from_epoch(record.next_attempt_at),
            waiting_on=list(record.waiting_on),
            allow_failure=record.allow_failure,
            waiting_for=record.waiting_for,
            expires_at=from_epoch(record.expires_at),
            args=_decoded(record.args),
            kwargs=_decoded(record.kwargs),
        )


def _decoded(value: Any) -> Any:
    """Stored (codec-encoded) arguments as the function gets them; ``None`` if unreadable."""
    if value is None:
        return None
    try:
        return from_wire(value)
    except Exception:  # noqa: BLE001 - a record written by hand: show nothing
        return None


#: What a worker is doing, in the original naq's words (its workers reported these as
#: ``status``): no job running, at least one running, shutting down.
WORKER_IDLE, WORKER_BUSY, WORKER_STOPPING = "idle", "busy", "stopping"


def worker_state(status: str, running_jobs: Sequence[str]) -> str:
    """``stopping`` for a worker shutting down, else ``busy`` while at least one job runs,
    else ``idle`` (the original naq's worker statuses)."""
    if status == WORKER_STOPPING:
        return WORKER_STOPPING
    return WORKER_BUSY if running_jobs else WORKER_IDLE


def _current_job_id(worker: WorkerInfo) -> str | None:
    return worker.running_jobs[0] if worker.running_jobs else None


@dataclass(frozen=True, slots=True)
class WorkerInfo(MappingView):
    """A live worker (``list_workers``); its times are aware UTC datetimes, ``uptime`` the
    seconds since it started, as of when it was read.

    ``status`` is naq's (``running`` or ``stopping``); ``state`` is what it is doing in the
    original naq's words: ``busy`` while at least one job runs, else ``idle``, or
    ``stopping``. Also a read-only mapping with the original naq's worker keys: there
    ``status`` is the original's status (the same as ``state``), ``timestamp`` and
    ``last_heartbeat_utc`` the last heartbeat, ``job_id``/``current_job_id`` the first
    running job (``None`` when idle); times are epoch seconds (see
    :class:`~naq.mapping.MappingView`).
    """

    ALIASES: ClassVar[Mapping[str, AliasReader]] = {
        "status": lambda w: w.state,
        "state": lambda w: w.state,
        "timestamp": lambda w: w.last_heartbeat,
        "last_heartbeat_utc": lambda w: w.last_heartbeat,
        "job_id": _current_job_id,
        "current_job_id": _current_job_id,
    }

    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    running_jobs: list[str]
    jobs_done: int
    jobs_failed: int
    started_at: datetime
    last_heartbeat: datetime
    status: str
    uptime: float = 0.0
    #: per queue, jobs it handed back to wait for their next attempt (not due yet)
    retrying: dict[str, int] = dataclasses.field(default_factory=dict)
    #: per queue, jobs it handed back to wait for a shared limit (not due yet)
    limited: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def state(self) -> str:
        """``idle``, ``busy`` or ``stopping``, from ``status`` and ``running_jobs`` (the
        original naq's worker statuses; see :func:`worker_state`)."""
        return worker_state(self.status, self.running_jobs)

    @classmethod
    def from_record(cls, record: WorkerRecord, now: float | None = None) -> WorkerInfo:
        """Build from the stored record; ``uptime`` counts to ``now`` (epoch seconds;
        default the current time; never negative, another host's clock may run ahead)."""
        moment = time.time() if now is None else now
        return cls(
            worker_id=record.worker_id,
            hostname=record.hostname,
            pid=record.pid,
            queues=list(record.queues),
            concurrency=record.concurrency,
            running_jobs=list(record.running_jobs),
            jobs_done=record.jobs_done,
            jobs_failed=record.jobs_failed,
            started_at=from_epoch(record.started_at),
            last_heartbeat=from_epoch(record.last_heartbeat),
            status=record.status,
            uptime=max(0.0, moment - record.started_at),
            retrying=dict(record.retrying),
            limited=dict(record.limited),
        )


@dataclass(frozen=True, slots=True)
class QueueInfo(MappingView):
    """Counts for one queue (``list_queues``). ``completed`` and ``failed`` (failed for good
    or dead) count every job since the counts began; the ``*_last_minute`` ones those of
    the last 60 s; all of them up to a worker heartbeat late.

    Also a read-only mapping of these fields (``queue["waiting"]``, ``to_dict()``), see
    :class:`~naq.mapping.MappingView`."""

    name: str
    waiting: int
    running: int
    scheduled: int = 0
    #: jobs waiting for the jobs they depend on
    deferred: int = 0
    #: jobs that failed and wait for their next attempt
    retrying: int = 0
    completed: int = 0
    failed: int = 0
    dead: int = 0
    completed_last_minute: int = 0
    failed_last_minute: int = 0
    workers: int = 0
    #: JetStream consumers serving the queue: its own, plus one per priority in use
    consumers: int = 0
    paused: bool = False
    #: waiting jobs by priority (0 to 9), only the priorities with jobs waiting
    waiting_by_priority: dict[int, int] = dataclasses.field(default_factory=dict)
