"""Purging a queue: its waiting jobs leave the jobs stream, and their records say so.

A job removed from the queue never runs, so its record must not stay ``pending`` (a caller
waiting for its result would wait out the whole timeout). The queue is read page by page:
the job ids of a page's messages are collected (many readers at once), exactly those
messages are purged, then each record still waiting is set to ``cancelled`` by
compare-and-set (many writes in flight), which wakes anyone waiting for it. An optional
``on_progress(done, total)`` callback hears of each purged message whose record was settled.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from loguru import logger

from . import constants as c
from .batches import batch_key, decode_batch, split_batch_job_id
from .dependencies import cancel_dependants
from .errors import WriteConflictError
from .job import MAX_SECONDS
from .models import JobRecord, JobStatus, decode_envelope, decode_record, encode, record_for
from .names import is_job_id
from .serialization import job_signature_valid
from .settings import validate_queue_name
from .transport import Connection, StoredMessage, kv, streams
from .work_progress import OnProgress, Tally

#: ``error_type`` of the record of a job purged from its queue.
PURGED_ERROR_TYPE = "naq:purged"
#: Statuses of a job whose message waits in its queue (a purge cancels them).
WAITING_STATUSES = frozenset(
    s.value for s in (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)
)
#: Messages read, purged and cancelled per page (bounds memory on a huge queue).
_PAGE = 5000
#: Readers walking parts of a page at once.
_READERS = 32
#: Record reads and writes in flight at once.
_IN_FLIGHT = 512
#: Compare-and-set attempts per record (a worker may write it meanwhile).
_CAS_ATTEMPTS = 3
#: Largest ``result_ttl`` taken from a message, seconds (the worker's limit too).
_MAX_TTL = 100 * MAX_SECONDS


@dataclass(frozen=True, slots=True)
class _Purged:
    """A purged job: its id, how long its record is kept, and the record to write when
    it has none of its own (a job of an ``enqueue_many`` batch, or an expired record)."""

    job_id: str
    ttl: int
    fresh: JobRecord


async def purge_waiting_jobs(
    conn: Connection, queue: str, *, on_progress: OnProgress | None = None
) -> int:
    """Remove every job waiting in ``queue`` when called and mark the records of those
    still waiting ``cancelled`` (``error_type`` ``naq:purged``); returns how many messages
    were removed. Jobs enqueued while it runs are left alone (as with a single purge).

    ``on_progress(done, total)`` is called as the work is done: ``total`` is the number of
    messages waiting at the start, ``done`` the messages removed whose records are settled."""
    validate_queue_name(queue)
    await conn.ensure_jobs_stream()
    await conn.ensure_bucket(c.RESULTS_BUCKET)
    counts = await streams.subject_counts(conn, c.JOBS_STREAM, c.queue_subject(queue) + ".*")
    counts.update(await streams.subject_counts(conn, c.JOBS_STREAM, c.queue_subject(queue)))
    tally = Tally(on_progress, sum(counts.values()))
    purged = 0
    for subject in c.queue_subjects(queue):  # every priority's subject that holds jobs
        if subject == c.queue_subject(queue) or subject in counts:
            purged += await _purge_subject(conn, queue, subject, tally)
    tally.finish()
    return purged


async def _purge_subject(conn: Connection, queue: str, subject: str, tally: Tally) -> int:
    """:func:`purge_waiting_jobs` for the jobs of one subject (one priority) of ``queue``."""
    newest = await streams.get_message(conn, c.JOBS_STREAM, subject=subject)
    if newest is None:
        return 0
    purged, start = 0, 1
    while True:
        page = await _read_page(conn, queue, subject, start, newest.seq)
        if page is None:
            return purged
        jobs, end = page
        before = tally.done
        removed = await streams.purge(conn, c.JOBS_STREAM, subject, below=end + 1)
        await _cancel_all(conn, queue, jobs, _settler(tally, removed))
        tally.reach(before + removed)  # messages carrying no job to cancel count too
        purged += removed
        start = end + 1


def _settler(tally: Tally, removed: int) -> Callable[[], None]:
    """What to call as each record of a page is settled, ``removed`` messages having been
    purged: it moves ``tally`` on by one, never past those messages."""
    before, settled = tally.done, 0

    def settle_one() -> None:
        nonlocal settled
        settled += 1
        tally.reach(before + min(settled, removed))

    return settle_one


async def _read_page(
    conn: Connection, queue: str, subject: str, start: int, bound: int
) -> tuple[list[_Purged], int] | None:
    """The jobs of about ``_PAGE`` messages of ``queue`` from sequence ``start`` on, read
    by many readers at once, and the last sequence the page covers (at most ``bound``);
    ``None`` when no message is left up to ``bound``."""
    first = await streams.get_message(conn, c.JOBS_STREAM, next_from=start, subject=subject)
    if first is None or first.seq > bound:
        return None
    # other queues' messages sit between ours: size the page by how dense ours are
    waiting = (await streams.subject_counts(conn, c.JOBS_STREAM, subject)).get(subject, 1)
    per_message = max(1.0, (bound - first.seq + 1) / max(1, waiting))
    end = min(bound, first.seq + math.ceil(_PAGE * per_message) - 1)
    # a part of at least 16 sequences: a reader's one read past its part is not wasted often
    parts = max(1, min(_READERS, (end - first.seq) // 16))
    span = math.ceil((end - first.seq) / parts) if end > first.seq else 0
    ranges = [
        (first.seq + 1 + i * span, min(end, first.seq + (i + 1) * span)) for i in range(parts)
    ]
    found = await asyncio.gather(
        *(_walk(conn, queue, subject, lo, hi) for lo, hi in ranges if lo <= hi)
    )
    jobs = [job for job in (_job_of(conn, queue, first),) if job is not None]
    for part in found:
        jobs.extend(part)
    return jobs, end


async def _walk(conn: Connection, queue: str, subject: str, lo: int, hi: int) -> list[_Purged]:
    """The jobs of ``queue``'s messages on ``subject`` with sequences ``lo`` to ``hi``."""
    jobs: list[_Purged] = []
    seq = lo
    while seq <= hi:
        msg = await streams.get_message(conn, c.JOBS_STREAM, next_from=seq, subject=subject)
        if msg is None or msg.seq > hi:
            break
        job = _job_of(conn, queue, msg)
        if job is not None:
            jobs.append(job)
        seq = msg.seq + 1
    return jobs


def _job_of(conn: Connection, queue: str, msg: StoredMessage) -> _Purged | None:
    """The job a purged message carries; ``None`` for one whose id must not touch a record
    (undecodable, invalid, naming another queue, or unsigned when signing is on)."""
    try:
        envelope = decode_envelope(msg.data)
    except Exception:  # noqa: BLE001 - msgspec errors, RecursionError: nothing to cancel
        return None
    if envelope.queue != queue or not is_job_id(envelope.id):
        return None
    keys = conn.settings.signing_keys
    if keys and not job_signature_valid(keys, msg.subject, envelope.id, msg.headers, msg.data):
        return None
    ttl = envelope.result_ttl
    if not isinstance(ttl, int) or not 1 <= ttl <= _MAX_TTL:
        ttl = conn.settings.result_ttl
    fresh = record_for(
        envelope, JobStatus.CANCELLED, error_type=PURGED_ERROR_TYPE, error=_reason(queue)
    )
    return _Purged(envelope.id, ttl, fresh)


def _reason(queue: str) -> str:
    return f"purged from queue {queue}"


async def _cancel_all(
    conn: Connection, queue: str, jobs: list[_Purged], settled: Callable[[], None]
) -> None:
    """Cancel the waiting records of ``jobs``, ``_IN_FLIGHT`` at a time, calling ``settled``
    as each one is done with; a write that failed for another reason than a conflict is
    raised once all were tried."""
    room = asyncio.Semaphore(_IN_FLIGHT)
    canceller = _Canceller(conn, queue)

    async def cancel(job: _Purged) -> None:
        async with room:
            try:
                await canceller.cancel(job)
            finally:
                settled()

    results = await asyncio.gather(*(cancel(job) for job in jobs), return_exceptions=True)
    # jobs that others depend on: their dependants are cancelled too (one listing of the
    # dependants markers, not one read per purged job)
    await cancel_dependants(conn, canceller.cancelled)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        logger.warning(
            "purge of {}: {} of {} records not marked cancelled", queue, len(errors), len(jobs)
        )
        raise errors[0]


class _Canceller:
    """Sets the records of one page's purged jobs of ``queue`` to ``cancelled``."""

    def __init__(self, conn: Connection, queue: str) -> None:
        self._conn = conn
        self._queue = queue
        self._now = time.time()
        #: per batch id, the read of its batch record's queue (one read per batch)
        self._batch_queues: dict[str, asyncio.Task[str | None]] = {}
        #: ids of the jobs whose records were set to cancelled
        self.cancelled: list[str] = []

    async def cancel(self, job: _Purged) -> None:
        """Set the record of ``job`` to ``cancelled`` if it is still waiting
        (compare-and-set), creating it when the job has none of its own."""
        fresh = msgspec.structs.replace(job.fresh, finished_at=self._now)
        batch = split_batch_job_id(job.job_id)
        if batch is not None:
            if await self._batch_queue(batch[0]) != self._queue:
                return  # its batch was enqueued on another queue: the message lied
            # a batch job has no record of its own until a worker writes one: create it
            # straight away, reading it only if a worker was first
            if await self._write(job, fresh, 0):
                return
        for _ in range(_CAS_ATTEMPTS):
            found = await kv.last_message(self._conn, c.RESULTS_BUCKET, job.job_id)
            if found is None or found[2]:  # no record (expired), or a deleted one
                revision, record = (found[0] if found else 0), fresh
            else:
                revision, data, _deleted = found
                cancelled = self._cancelled(data)
                if cancelled is None:
                    return
                record = cancelled
            if await self._write(job, record, revision):
                return
        logger.debug("purge of {}: record {} kept changing; left as is", self._queue, job.job_id)

    def _cancelled(self, data: bytes) -> JobRecord | None:
        """The stored record set to ``cancelled``; ``None`` to leave it alone (unreadable,
        running or finished, or another queue's job)."""
        try:
            record = decode_record(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if record.status not in WAITING_STATUSES or record.queue_name != self._queue:
            return None
        record.status = JobStatus.CANCELLED.value
        record.finished_at = self._now
        record.next_attempt_at = None
        record.error_type = PURGED_ERROR_TYPE
        record.error = _reason(self._queue)
        return record

    async def _write(self, job: _Purged, record: JobRecord, revision: int) -> bool:
        """Store ``record`` if the key is still at ``revision``; False on a conflict."""
        try:
            await kv.put(
                self._conn,
                c.RESULTS_BUCKET,
                job.job_id,
                encode(record),
                last=revision,
                ttl=job.ttl,
            )
        except WriteConflictError:
            return False
        self.cancelled.append(job.job_id)
        return True

    def _batch_queue(self, batch_id: str) -> asyncio.Task[str | None]:
        """The queue of batch ``batch_id`` as its batch record says (``self._queue`` when
        the record expired: nothing says otherwise), read once."""
        task = self._batch_queues.get(batch_id)
        if task is None:
            task = self._batch_queues[batch_id] = asyncio.ensure_future(
                self._read_batch_queue(batch_id)
            )
        return task

    async def _read_batch_queue(self, batch_id: str) -> str | None:
        entry = await kv.get(self._conn, c.RESULTS_BUCKET, batch_key(batch_id))
        if entry is None:
            return self._queue
        try:
            return decode_batch(entry.value).queue_name
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
