"""The dead-letter stream: jobs that never ran properly or failed for good, kept with their
raw bytes, original headers, reason, queue and time, so they can be inspected and requeued."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js.api import RawStreamMsg

from . import constants as c
from .connection import Connection
from .errors import JobNotFoundError, NaqConnectionError
from .models import JobStatus
from .settings import validate_queue_name

H_REASON = "Naq-Dlq-Reason"
H_QUEUE = "Naq-Dlq-Queue"
H_JOB_ID = "Naq-Dlq-Job-Id"
H_FAILED_AT = "Naq-Dlq-Failed-At"
H_KIND = "Naq-Dlq-Kind"
H_ORIGINAL_PREFIX = "Naq-Orig-"


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
            H_REASON: _one_line(reason)[:2000],
            H_QUEUE: queue,
            H_FAILED_AT: f"{time.time():.6f}",
            H_KIND: kind,
        }
        if job_id:
            headers[H_JOB_ID] = job_id
        if dedupe_key:
            headers[c.HEADER_MSG_ID] = f"dlq-{dedupe_key}"
        for name, value in (original_headers or {}).items():
            if name.startswith("Nats-") and name != c.HEADER_MSG_ID:
                continue  # server-interpreted headers must not act on the DLQ stream
            headers[f"{H_ORIGINAL_PREFIX}{name}"] = _one_line(str(value))
        ack = await self._conn.js.publish(c.dlq_subject(queue), payload, headers=headers)
        return int(ack.seq)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter entry (``naq dlq list|show``)."""

    id: int
    reason: str
    kind: str
    queue: str
    job_id: str | None
    failed_at: float | None
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
        """JSON-friendly form; the payload as text when it is UTF-8, else base64."""
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
            "failed_at": self.failed_at,
            "payload": payload,
            "payload_encoding": encoding,
            "headers": self.original_headers,
        }


def _entry(msg: RawStreamMsg) -> DeadLetter:
    headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
    failed = headers.get(H_FAILED_AT)
    return DeadLetter(
        id=int(msg.seq or 0),
        reason=headers.get(H_REASON, ""),
        kind=headers.get(H_KIND, ""),
        queue=headers.get(H_QUEUE, (msg.subject or "").removeprefix(c.DLQ_SUBJECT_PREFIX)),
        job_id=headers.get(H_JOB_ID),
        failed_at=float(failed) if failed else None,
        payload=msg.data or b"",
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
        try:
            msg = await conn.js.get_msg(c.DLQ_STREAM, seq=seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            break
        entries.append(_entry(msg))
        seq = int(msg.seq or seq) + 1
    return entries


async def get_dead_letter(conn: Connection, entry_id: int) -> DeadLetter:
    """One dead letter by id; raises :class:`JobNotFoundError` if there is none."""
    await conn.ensure_dlq_stream()
    try:
        msg = await conn.js.get_msg(c.DLQ_STREAM, seq=int(entry_id))
    except nats.js.errors.NotFoundError:
        raise JobNotFoundError(f"no dead letter with id {entry_id}") from None
    return _entry(msg)


async def requeue_dead_letter(conn: Connection, entry_id: int) -> str | None:
    """Publish the original job again (same job id) and remove the entry; returns the job id.

    The job's record goes back to ``pending``; an undecodable payload is requeued as it is
    (the worker will dead-letter it again).
    """
    entry = await get_dead_letter(conn, entry_id)
    await conn.ensure_jobs_stream()
    # reset the record first: once published, a worker may store the new outcome at once
    if entry.job_id:
        await _reset_record(conn, entry.job_id)
    headers = dict(entry.original_headers)
    headers[c.HEADER_MSG_ID] = f"requeue-{entry.id}"
    await conn.js.publish(c.queue_subject(entry.queue), entry.payload, headers=headers)
    await conn.js.delete_msg(c.DLQ_STREAM, entry.id)
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
        if await store.update(record, revision, conn.settings.result_ttl):
            return
        # changed meanwhile: read again


async def purge_dead_letters(conn: Connection, queue: str | None = None) -> int:
    """Remove dead letters (of one queue, or all); returns how many."""
    await conn.ensure_dlq_stream()
    request = json.dumps({"filter": _filter(queue)}).encode()
    reply = await conn.nc.request(f"$JS.API.STREAM.PURGE.{c.DLQ_STREAM}", request, timeout=10)
    data = json.loads(reply.data)
    if "error" in data:
        raise NaqConnectionError(f"purge of dead letters failed: {data['error']}")
    return int(data.get("purged", 0))
