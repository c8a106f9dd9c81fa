"""Wire and storage shapes: the versioned job envelope, the job record kept in the results
bucket, and the worker record. All JSON (msgspec), unknown fields ignored so older and newer
naq versions can read each other's data."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import msgspec

ENVELOPE_VERSION = 1


class JobStatus(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"  # waiting for the jobs it depends on
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def is_final(self) -> bool:
        """True for statuses a job never leaves (unless requeued)."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.DEAD}
)
#: The same as stored in records (``JobRecord.status`` is a plain string).
FINAL_STATUS_VALUES = frozenset(status.value for status in FINAL_STATUSES)

#: Kept for users of the original naq.
JOB_STATUS = JobStatus


class JobEnvelope(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What travels on ``naq.queue.<queue>``: the call and its options, JSON encoded.

    ``args``/``kwargs`` hold codec-encoded values; with the pickle serializer they are empty
    and ``pickled`` carries base64 cloudpickle bytes of ``(args, kwargs)`` instead.
    """

    v: int = ENVELOPE_VERSION
    id: str
    fn: str
    queue: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    pickled: str | None = None
    max_retries: int = 0
    retry_delay: float | list[float] = 0.0
    retry_strategy: str = "linear"
    retry_on: list[str] = msgspec.field(default_factory=list)
    ignore_on: list[str] = msgspec.field(default_factory=list)
    timeout: float | None = None
    result_ttl: int | None = None
    depends_on: list[str] = msgspec.field(default_factory=list)
    allow_failure: bool = False
    priority: int = 0
    limits: list[str] = msgspec.field(default_factory=list)
    expires_at: float | None = None
    enqueued_at: float = msgspec.field(default_factory=time.time)
    schedule_id: str | None = None
    #: headers set by ``before_enqueue`` hooks (e.g. a trace context), given to the
    #: worker's hooks as ``JobRun.headers``
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class HeldMessage(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The message of a ``deferred`` job, published as it is when the job is released:
    to its queue (``status`` pending) or as its ``@at`` schedule (``status`` scheduled; the
    subject follows from the status, never from stored data). Kept byte for byte, so a
    signed job keeps its producer's signature."""

    status: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    payload: msgspec.Raw
    released_at: float | None = None


class AttemptRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One run of a job and how it ended."""

    attempt: int
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None


class JobRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The state of one job, stored as JSON under its id in the results bucket."""

    v: int = ENVELOPE_VERSION
    job_id: str
    status: str
    queue_name: str
    function: str
    enqueued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    attempts: list[AttemptRecord] = msgspec.field(default_factory=list)
    max_retries: int = 0
    depends_on: list[str] = msgspec.field(default_factory=list)
    waiting_on: list[str] = msgspec.field(default_factory=list)  # filled when read (deferred)
    allow_failure: bool = False
    priority: int = 0
    expires_at: float | None = None
    held: HeldMessage | None = None  # a deferred job's message, until it is released
    pinned: bool = False  # kept without expiry while jobs that depend on it are unsettled
    result_ttl: int | None = None
    progress: float = 0.0
    progress_message: str | None = None
    schedule_id: str | None = None
    #: the call's arguments as they travel (codec-encoded), kept when its message is at most
    #: MAX_RECORDED_CALL bytes (``naq job``, the dashboard); None otherwise
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    result: Any = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    next_attempt_at: float | None = None
    handed_back: int = 0  # deliveries returned unfinished at a worker's shutdown
    limit_waits: int = 0  # deliveries sent back because a shared limit was full (no attempt)
    waiting_for: str | None = None  # the limit it waits for, while it does
    suspect_runs: int = 0  # runs started alone after its worker died holding it
    #: with signing on: the stream sequence of the message that claimed the job (the only
    #: message that may run it while this record lives; see naq.worker.claims)
    claimed_seq: int | None = None


class WorkerRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A live worker, refreshed every heartbeat and expiring when the worker stops beating."""

    v: int = ENVELOPE_VERSION
    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    running_jobs: list[str] = msgspec.field(default_factory=list)
    jobs_done: int = 0
    jobs_failed: int = 0
    started_at: float
    last_heartbeat: float
    status: str = "running"
    #: per queue, jobs it handed back to wait for their next attempt / for a shared limit
    #: (not due yet); the server counts them as unacknowledged, like running ones
    retrying: dict[str, int] = msgspec.field(default_factory=dict)
    limited: dict[str, int] = msgspec.field(default_factory=dict)


#: A job's arguments are kept in its record when its message is at most this many bytes.
MAX_RECORDED_CALL = 4096


def record_for(
    envelope: JobEnvelope, status: JobStatus, *, size: int | None = None, **fields: Any
) -> JobRecord:
    """A job record filled from its envelope, with ``status`` and any further ``fields``.
    ``size``: the job message's size in bytes; a call that small (:data:`MAX_RECORDED_CALL`,
    not pickled) keeps its arguments in the record."""
    if size is not None and size <= MAX_RECORDED_CALL and envelope.pickled is None:
        fields.setdefault("args", envelope.args)
        fields.setdefault("kwargs", envelope.kwargs or None)
    return JobRecord(
        job_id=envelope.id,
        status=status.value,
        queue_name=envelope.queue,
        function=envelope.fn,
        enqueued_at=envelope.enqueued_at,
        max_retries=envelope.max_retries,
        depends_on=envelope.depends_on,
        allow_failure=envelope.allow_failure,
        priority=envelope.priority,
        expires_at=envelope.expires_at,
        result_ttl=envelope.result_ttl,
        schedule_id=envelope.schedule_id,
        **fields,
    )


def mark_cancelled(record: JobRecord, error_type: str, reason: str) -> JobRecord:
    """Turn ``record`` into the record of a job cancelled for ``reason``."""
    record.status = JobStatus.CANCELLED.value
    record.finished_at = time.time()
    record.error_type, record.error = error_type, reason
    record.waiting_on, record.held, record.next_attempt_at = [], None, None
    return record


_json_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(JobEnvelope)
_record_decoder = msgspec.json.Decoder(JobRecord)
_worker_decoder = msgspec.json.Decoder(WorkerRecord)


def encode(obj: msgspec.Struct) -> bytes:
    """JSON bytes of an envelope or record."""
    return _json_encoder.encode(obj)


def decode_envelope(data: bytes) -> JobEnvelope:
    """Parse a job message; raises ``msgspec.DecodeError``/``ValidationError`` on bad input."""
    return _envelope_decoder.decode(data)


def decode_record(data: bytes) -> JobRecord:
    """Parse a job record."""
    return _record_decoder.decode(data)


def decode_worker(data: bytes) -> WorkerRecord:
    """Parse a worker record."""
    return _worker_decoder.decode(data)
