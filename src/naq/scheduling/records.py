"""Job records of scheduled jobs in the results bucket: written with status ``scheduled``
(``next_attempt_at`` = when it is due) and changed only by compare-and-set."""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import constants as c
from ..errors import WriteConflictError
from ..job import Job
from ..models import JobEnvelope, JobRecord, JobStatus, encode, record_for
from ..results import ResultStore
from ..transport import Connection, kv

_CAS_ATTEMPTS = 20


def scheduled_record(job: Job, envelope: JobEnvelope, due: float) -> JobRecord:
    """The record of a one-off job waiting for its time."""
    return record_for(envelope, JobStatus.SCHEDULED, next_attempt_at=due)


def pending_run_record(envelope: JobEnvelope) -> JobRecord:
    """The record of a run a recurring schedule just enqueued."""
    return record_for(envelope, JobStatus.PENDING)


def scheduled_ttl(due: float, result_ttl: int) -> float:
    """A scheduled record must outlive its due time, then be kept ``result_ttl`` seconds."""
    return max(0.0, due - time.time()) + result_ttl


async def update_record(
    conn: Connection,
    job_id: str,
    change: Callable[[JobRecord], JobRecord | None],
    ttl: float | str,
) -> JobRecord | None:
    """Compare-and-set ``change(record)`` onto the record of ``job_id``.

    ``change`` returns the new record, or ``None`` to leave it as it is. Returns what was
    written (``None`` when nothing was, or the record does not exist).
    """
    store = ResultStore(conn)
    for _ in range(_CAS_ATTEMPTS):
        found = await store.get_entry(job_id)
        if found is None:
            return None
        record, revision = found
        new = change(record)
        if new is None:
            return None
        try:
            await kv.put(conn, c.RESULTS_BUCKET, job_id, encode(new), last=revision, ttl=ttl)
        except WriteConflictError:
            continue
        return new
    return None
