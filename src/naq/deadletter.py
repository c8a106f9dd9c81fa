"""The dead-letter stream: jobs that never ran properly or failed for good, kept with their
raw bytes, original headers, reason, queue and time, so they can be inspected and requeued."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import constants as c
from .errors import ConfigurationError, JobNotFoundError, NaqConnectionError, NaqException
from .models import JobStatus, decode_envelope
from .settings import validate_queue_name
from .transport import (
    Connection,
    StoredMessage,
    is_header_name,
    is_header_value,
    safe_header_value,
    streams,
)
from .utctime import from_epoch
from .work_progress import OnProgress, Tally

H_REASON = "Naq-Dlq-Reason"
H_QUEUE = "Naq-Dlq-Queue"
H_JOB_ID = "Naq-Dlq-Job-Id"
H_FAILED_AT = "Naq-Dlq-Failed-At"
H_KIND = "Naq-Dlq-Kind"
H_ORIGINAL_PREFIX = "Naq-Orig-"
#: How many original headers were not kept (names or values that cannot be sent safely).
H_DROPPED = "Naq-Dlq-Dropped-Headers"
#: Set when the payload had to be cut to fit the server's max_payload: its original size.
H_TRUNCATED = "Naq-Dlq-Truncated"
#: Dead letters requeued at once by :func:`requeue_dead_letters`.
_REQUEUE_WINDOW = 32


class DeadLetters:
    """Publishes dead letters; borrows a :class:`Connection`."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    async def publish(
        self,
        *,
        queue: str,
        payload: bytes,
        reason: str,
        kind: str,
        job_id: str | None = None,
        original_headers: Mapping[str, str] | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """Store one dead letter and wait until the server has it; returns its id (sequence).

        ``dedupe_key`` (e.g. stream sequence + delivery) makes a retried publish store once.
        """
        await self._conn.ensure_dlq_stream()
        headers: dict[str, str] = {
            H_REASON: safe_header_value(reason)[:2000],
            H_QUEUE: queue,
            H_FAILED_AT: f"{time.time():.6f}",
            H_KIND: kind,
        }
        if job_id:
            headers[H_JOB_ID] = job_id
        if dedupe_key:
            headers[c.HEADER_MSG_ID] = f"dlq-{dedupe_key}"
        dropped = 0
        for name, value in (original_headers or {}).items():
            if name.startswith("Nats-") and name != c.HEADER_MSG_ID:
                continue  # server-interpreted headers must not act on the DLQ stream
            kept = f"{H_ORIGINAL_PREFIX}{name}"
            if is_header_name(kept) and is_header_value(value):
                headers[kept] = value
            else:  # a hostile header must not stop its message from being dead-lettered
                dropped += 1
        if dropped:
            headers[H_DROPPED] = str(dropped)
        # the original message was within max_payload, but our headers come on top of it
        room = self._conn.max_payload - _headers_size(headers)
        if len(payload) > room:
            headers[H_TRUNCATED] = str(len(payload))
            payload = payload[: max(0, room - len(H_TRUNCATED) - 32)]
        return await self._conn.publish(c.dlq_subject(queue), payload, headers)


def _headers_size(headers: dict[str, str]) -> int:
    return 16 + sum(len(k) + len(v) + 4 for k, v in headers.items())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter entry (``naq dlq list|show``); ``failed_at`` is an aware UTC datetime
    (``None`` when the entry carries no readable time)."""

    id: int
    reason: str
    kind: str
    queue: str
    job_id: str | None
    failed_at: datetime | None
    payload: bytes
    headers: dict[str, str]

    @property
    def original_headers(self) -> dict[str, str]:
        """Headers the message had on its queue."""
        return {
            k.removeprefix(H_ORIGINAL_PREFIX): v
            for k, v in self.headers.items()
            if k.startswith(H_ORIGINAL_PREFIX)
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form: ``failed_at`` in ISO 8601, the payload as text when it is
        UTF-8, else base64."""
        try:
            payload, encoding = self.payload.decode(), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(self.payload).decode(), "base64"
        return {
            "id": self.id,
            "reason": self.reason,
            "kind": self.kind,
            "queue": self.queue,
            "job_id": self.job_id,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "payload": payload,
            "payload_encoding": encoding,
            "headers": self.original_headers,
        }


def _failed_at(text: str | None) -> datetime | None:
    """The time in a ``Naq-Dlq-Failed-At`` header; ``None`` if missing or not a number."""
    try:
        return from_epoch(float(text)) if text else None
    except ValueError:
        return None


def _entry(msg: StoredMessage) -> DeadLetter:
    headers = msg.headers
    return DeadLetter(
        id=msg.seq,
        reason=headers.get(H_REASON, ""),
        kind=headers.get(H_KIND, ""),
        queue=headers.get(H_QUEUE, msg.subject.removeprefix(c.DLQ_SUBJECT_PREFIX)),
        job_id=headers.get(H_JOB_ID),
        failed_at=_failed_at(headers.get(H_FAILED_AT)),
        payload=msg.data,
        headers=headers,
    )


def _filter(queue: str | None) -> str:
    return c.dlq_subject(validate_queue_name(queue)) if queue else f"{c.DLQ_SUBJECT_PREFIX}*"


async def list_dead_letters(
    conn: Connection, queue: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Dead letters, oldest first (at most ``limit``), optionally of one queue."""
    await conn.ensure_dlq_stream()
    subject = _filter(queue)
    entries: list[DeadLetter] = []
    seq = 1
    while len(entries) < limit:
        msg = await streams.get_message(conn, c.DLQ_STREAM, subject=subject, next_from=seq)
        if msg is None:
            break
        entries.append(_entry(msg))
        seq = msg.seq + 1
    return entries


async def get_dead_letter(conn: Connection, entry_id: int) -> DeadLetter:
    """One dead letter by id; raises :class:`JobNotFoundError` if there is none."""
    await conn.ensure_dlq_stream()
    msg = await streams.get_message(conn, c.DLQ_STREAM, seq=_check_entry_id(entry_id))
    if msg is None:
        raise JobNotFoundError(f"no dead letter with id {entry_id}")
    return _entry(msg)


async def requeue_dead_letter(conn: Connection, entry_id: int) -> str | None:
    """Publish the original job again (same job id) and remove the entry; returns the job id.

    The job's record goes back to ``pending``; an undecodable payload is requeued as it is
    (the worker will dead-letter it again).
    """
    entry = await get_dead_letter(conn, entry_id)
    await conn.ensure_jobs_stream()
    return await _requeue(conn, entry)


@dataclass(frozen=True, slots=True)
class BulkRequeue:
    """What :func:`requeue_dead_letters` did: the ``(entry id, job id)`` of each dead letter
    requeued (job id ``None`` for an undecodable payload), and the ``(entry id, why)`` of each
    one left in place because it cannot be requeued (e.g. it names an invalid queue)."""

    requeued: list[tuple[int, str | None]]
    skipped: list[tuple[int, str]]


async def requeue_dead_letters(
    conn: Connection, queue: str | None = None, *, on_progress: OnProgress | None = None
) -> BulkRequeue:
    """Requeue every dead letter (of ``queue``, or of all queues) stored when called, oldest
    first, a few at a time, each as :func:`requeue_dead_letter` does.

    Jobs that die again meanwhile are not requeued a second time (only entries up to the
    newest one at the start are taken). ``on_progress(done, total)`` is called as each entry
    is handled (``total``: the entries stored at the start). A connection failure stops the
    walk and is raised; the entries requeued until then stay requeued.
    """
    await conn.ensure_dlq_stream()
    subject = _filter(queue)
    newest = await streams.get_message(conn, c.DLQ_STREAM, subject=subject)
    if newest is None:
        Tally(on_progress, 0).finish()
        return BulkRequeue([], [])
    await conn.ensure_jobs_stream()
    counts = await streams.subject_counts(conn, c.DLQ_STREAM, subject)
    tally = Tally(on_progress, sum(counts.values()))
    done = BulkRequeue([], [])
    window: list[DeadLetter] = []
    seq = 1
    while seq <= newest.seq:
        msg = await streams.get_message(conn, c.DLQ_STREAM, subject=subject, next_from=seq)
        if msg is None or msg.seq > newest.seq:
            break
        window.append(_entry(msg))
        seq = msg.seq + 1
        if len(window) == _REQUEUE_WINDOW:
            await _requeue_window(conn, window, done, tally)
            window = []
    await _requeue_window(conn, window, done, tally)
    tally.finish()
    return done


async def _requeue_window(
    conn: Connection, entries: list[DeadLetter], done: BulkRequeue, tally: Tally
) -> None:
    """Requeue ``entries`` at once, adding each outcome to ``done`` in entry order; raises
    the first failure that is not the entry's own fault (e.g. a lost connection)."""

    async def one(entry: DeadLetter) -> str | None:
        try:
            return await _requeue(conn, entry)
        finally:
            tally.advance()

    outcomes = await asyncio.gather(*(one(e) for e in entries), return_exceptions=True)
    for entry, outcome in zip(entries, outcomes, strict=True):
        if isinstance(outcome, NaqException) and not isinstance(outcome, NaqConnectionError):
            done.skipped.append((entry.id, str(outcome)))
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            done.requeued.append((entry.id, outcome))


async def _requeue(conn: Connection, entry: DeadLetter) -> str | None:
    """Publish ``entry``'s job again and remove the entry; returns the job id."""
    queue = validate_queue_name(entry.queue)
    # reset the record first: once published, a worker may store the new outcome at once
    if entry.job_id:
        await _reset_record(conn, entry.job_id)
    headers = dict(entry.original_headers)
    headers[c.HEADER_MSG_ID] = f"requeue-{entry.id}"
    await conn.publish(c.queue_subject(queue, _priority_of(entry.payload)), entry.payload, headers)
    await streams.delete_message(conn, c.DLQ_STREAM, entry.id)
    return entry.job_id


async def _reset_record(conn: Connection, job_id: str) -> None:
    """Set the job's record back to ``pending`` by compare-and-set on its revision."""
    from .results import ResultStore

    store = ResultStore(conn)
    for _ in range(5):
        found = await store.get_entry(job_id)
        if found is None:
            return
        record, revision = found
        record.status = JobStatus.PENDING.value
        record.finished_at = None
        record.result = None
        record.claimed_seq = None  # with signing on, the requeued message claims it anew
        if await store.update(record, revision, conn.settings.result_ttl):
            return
        # changed meanwhile: read again


async def purge_dead_letters(conn: Connection, queue: str | None = None) -> int:
    """Remove dead letters (of one queue, or all); returns how many."""
    await conn.ensure_dlq_stream()
    return await streams.purge(conn, c.DLQ_STREAM, _filter(queue))


def _check_entry_id(entry_id: object) -> int:
    """``entry_id`` if it is a dead letter's id (a positive int), else ConfigurationError."""
    if isinstance(entry_id, bool) or not isinstance(entry_id, int) or entry_id < 1:
        raise ConfigurationError(
            f"invalid dead letter id {str(entry_id)[:40]!r}: ids are positive integers "
            "(see naq dlq list)"
        )
    return entry_id


def _priority_of(payload: bytes) -> int:
    """The priority a dead job's payload asks for (0 when it cannot say)."""
    try:
        priority = decode_envelope(payload).priority
    except Exception:  # noqa: BLE001 - undecodable: requeued as it is, on the default subject
        return 0
    return priority if priority in c.PRIORITY_LEVELS else 0
