"""Job expiry (``expires=``): a job not started by its ``expires_at`` never runs; its record
becomes ``cancelled`` with the error type :data:`EXPIRED` and a reason naming when it expired.

Three places apply it: the worker about to start a job (the record it stores is the truth),
the release of a deferred job, and every read of a record (:func:`as_read`), so a reader
learns of the expiry at once instead of when a worker next sees the job.
"""

from __future__ import annotations

import time

from .models import JobRecord, JobStatus, mark_cancelled
from .utctime import from_epoch

#: Error type of a job cancelled because it was not started by its ``expires_at``.
EXPIRED = "naq:expired"
#: How long after ``expires_at`` a reader still trusts a record that says the job has not
#: started, seconds: a worker that started the job just before then writes its ``running``
#: (or final) record a moment later, and the job must not read as expired meanwhile.
READ_GRACE = 0.1
#: Statuses of a job that has not started (or waits to start again): expiry applies.
_NOT_STARTED = frozenset(
    status.value
    for status in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.RETRYING)
)


def has_expired(expires_at: float | None, now: float | None = None) -> bool:
    """True if a job with this ``expires_at`` (epoch seconds) may no longer start."""
    if expires_at is None:
        return False
    return (time.time() if now is None else now) >= expires_at


def expired_reason(expires_at: float) -> str:
    """The reason stored for a job that expired at ``expires_at``."""
    moment = from_epoch(expires_at).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"expired: not started by {moment}"


def mark_expired(record: JobRecord) -> JobRecord:
    """Turn ``record`` (with an ``expires_at``) into the record of a job that expired."""
    assert record.expires_at is not None
    mark_cancelled(record, EXPIRED, expired_reason(record.expires_at))
    record.finished_at = max(record.expires_at, record.enqueued_at or record.expires_at)
    return record


def read_deadline(record: JobRecord) -> float | None:
    """When a reader counts ``record`` as expired (epoch seconds), or ``None`` if it never
    will: the job has no ``expires_at``, is running, or has finished."""
    if record.expires_at is None or record.status not in _NOT_STARTED:
        return None
    return record.expires_at + READ_GRACE


def as_read(record: JobRecord | None) -> JobRecord | None:
    """``record`` as readers see it: a job not started by its ``expires_at`` is reported
    ``cancelled`` (expired) even before a worker recorded it so."""
    if record is None:
        return None
    deadline = read_deadline(record)
    if deadline is not None and time.time() >= deadline:
        return mark_expired(record)
    return record
