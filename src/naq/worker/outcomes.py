"""The job records a worker writes (running, completed, retrying, failed, dead), bounded in
size whatever the job does: a record is one message, and a message over the server's
``max_payload`` would make the server close the worker's connection.

A record keeps the last :data:`MAX_ATTEMPTS` attempts (a job with ``max_retries=10**9`` must
not grow a record past a megabyte), error texts of at most :data:`MAX_ERROR` characters, the
latest attempt's traceback (at most :data:`MAX_TRACEBACK` characters) and those of the
:data:`KEPT_TRACEBACKS` attempts before it (cut to :data:`MAX_OLD_TRACEBACK`). A result too
large to store becomes a failure of its own.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import PayloadTooLargeError
from ..models import AttemptRecord, JobEnvelope, JobRecord, JobStatus, encode, record_for
from .delivery import Delivery, Run

MAX_ATTEMPTS = 20
MAX_ERROR = 2000
MAX_TRACEBACK = 8000
#: Earlier attempts whose tracebacks a record keeps, and their length at most.
KEPT_TRACEBACKS = 4
MAX_OLD_TRACEBACK = 3000
#: Room left in a message for headers and the record's own fields besides the result.
HEADROOM = 4096


def qualified(exc: BaseException) -> str:
    """``module:qualname`` of an exception's class."""
    return f"{type(exc).__module__}:{type(exc).__qualname__}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


class Records:
    """Builds the records of one worker's runs."""

    def __init__(self, worker_id: str, default_ttl: int) -> None:
        self.worker_id = worker_id
        self.default_ttl = default_ttl

    def ttl(self, envelope: JobEnvelope) -> int:
        """Seconds the job's record is kept."""
        return envelope.result_ttl or self.default_ttl

    def record(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        status: JobStatus,
        attempt: int,
        started: float,
        history: list[AttemptRecord],
    ) -> JobRecord:
        """The job's record for ``attempt`` (started at ``started``) in ``status``."""
        attempts: list[AttemptRecord] = []
        if history:
            attempts = [a for a in history if a.attempt < attempt][-(MAX_ATTEMPTS - 1) :]
            for n, old in enumerate(reversed(attempts)):
                if old.traceback is not None:
                    # the last few keep a shortened traceback, older ones none
                    kept = n < KEPT_TRACEBACKS
                    old.traceback = _cut(old.traceback, MAX_OLD_TRACEBACK) if kept else None
        attempts.append(
            AttemptRecord(attempt=attempt, worker_id=self.worker_id, started_at=started)
        )
        return record_for(
            envelope,
            status,
            size=len(delivery.msg.data),
            handed_back=delivery.handed_back,
            limit_waits=delivery.limit_waits,
            suspect_runs=delivery.suspect_runs,
            started_at=started,
            worker_id=self.worker_id,
            attempts=attempts,
        )

    def of_run(self, delivery: Delivery, run: Run, status: JobStatus) -> JobRecord:
        """The record of ``run`` in ``status``."""
        return self.record(delivery, run.envelope, status, run.attempt, run.started, run.history)

    def running(self, delivery: Delivery, run: Run) -> JobRecord:
        """The ``running`` record, with the progress reported so far."""
        record = self.of_run(delivery, run, JobStatus.RUNNING)
        record.progress, record.progress_message = run.ctx.progress, run.ctx.progress_message
        return record

    def completed(self, delivery: Delivery, run: Run, result: Any) -> JobRecord:
        """The ``completed`` record holding ``result`` (already encoded for JSON)."""
        record = self.of_run(delivery, run, JobStatus.COMPLETED)
        record.finished_at = time.time()
        record.result = result
        record.progress, record.progress_message = 1.0, run.ctx.progress_message
        record.attempts[-1].finished_at = record.finished_at
        return record

    def failed(
        self, delivery: Delivery, run: Run, exc: BaseException, retry_at: float | None
    ) -> JobRecord:
        """The record of a failed run: ``retrying`` (next attempt at ``retry_at``) or
        ``failed`` for good."""
        now = time.time()
        status = JobStatus.RETRYING if retry_at is not None else JobStatus.FAILED
        record = self.of_run(delivery, run, status)
        last = record.attempts[-1]
        last.finished_at = now
        last.error_type = _cut(qualified(exc), 300)
        last.error = _cut(str(exc) or type(exc).__name__, MAX_ERROR)
        last.traceback = _cut("".join(traceback.format_exception(exc)), MAX_TRACEBACK)
        record.error_type, record.error, record.traceback = (
            last.error_type,
            last.error,
            last.traceback,
        )
        if retry_at is not None:
            record.next_attempt_at = retry_at
        else:
            record.finished_at = now
        return record

    def dead(
        self, delivery: Delivery, envelope: JobEnvelope, attempt: int, kind: str, reason: str
    ) -> JobRecord:
        """The ``dead`` record of a job that never ran properly."""
        now = time.time()
        record = self.record(delivery, envelope, JobStatus.DEAD, attempt, now, [])
        record.finished_at = now
        record.error_type, record.error = f"naq:{kind}", _cut(reason, MAX_ERROR)
        record.attempts[-1].error_type, record.attempts[-1].error = record.error_type, record.error
        return record


#: Records smaller than this fit any server (max_payload is 1 MB by default; a server set
#: lower than this still refuses the write at the boundary, before anything is sent).
ALWAYS_FITS = 64 * 1024


def check_fits(record: JobRecord, max_payload: Callable[[], int]) -> bytes:
    """The encoded record, or :class:`PayloadTooLargeError` if it cannot be stored
    (``max_payload`` is asked only for a large record)."""
    data = encode(record)
    if len(data) > ALWAYS_FITS and len(data) + HEADROOM > (limit := max_payload()):
        raise PayloadTooLargeError(
            f"the job's result is {len(data):,} bytes encoded, too large to store "
            f"(the server's max_payload is {limit:,} bytes); return less, or store "
            "large data elsewhere and return a reference"
        )
    return data
