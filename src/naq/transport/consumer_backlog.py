"""What one durable consumer has not finished, and since when: its waiting and unacknowledged
counts (one ``CONSUMER.INFO``) and the stored time of its oldest undelivered message (one
``STREAM.MSG.GET``, only when something waits). The metrics' queue gauges read it
(:mod:`naq.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import ServerError
from .names import check_subject

if TYPE_CHECKING:
    from .connection import Connection

#: JetStream error codes: no such consumer; no such message.
_CONSUMER_NOT_FOUND = 10014
_NO_MESSAGE = 10037


@dataclass(frozen=True, slots=True)
class ConsumerBacklog:
    """One consumer's unfinished messages."""

    #: not delivered yet
    waiting: int
    #: delivered and not acknowledged yet (running, or handed back to wait for a retry)
    running: int
    #: epoch seconds the oldest undelivered message was stored (None: nothing waits)
    oldest_waiting_at: float | None


async def consumer_backlog(
    conn: Connection, stream: str, consumer: str, subject: str
) -> ConsumerBacklog | None:
    """The backlog of ``consumer`` of ``stream``, whose messages are on ``subject`` (its
    filter); ``None`` if there is no such consumer."""
    check_subject(subject)
    try:
        info = await conn.api(f"CONSUMER.INFO.{stream}.{consumer}", {})
    except ServerError as exc:
        if exc.err_code == _CONSUMER_NOT_FOUND:
            return None
        raise
    waiting = int(info.get("num_pending") or 0)
    running = int(info.get("num_ack_pending") or 0)
    oldest = None
    if waiting:
        delivered = int((info.get("delivered") or {}).get("stream_seq") or 0)
        oldest = await _stored_at(conn, stream, subject, delivered + 1)
    return ConsumerBacklog(waiting, running, oldest)


async def _stored_at(conn: Connection, stream: str, subject: str, from_seq: int) -> float | None:
    """When the first message on ``subject`` at or after ``from_seq`` was stored."""
    try:
        reply = await conn.api(
            f"STREAM.MSG.GET.{stream}", {"seq": from_seq, "next_by_subj": subject}
        )
    except ServerError as exc:
        if exc.err_code == _NO_MESSAGE:  # delivered meanwhile
            return None
        raise
    message: dict[str, Any] = reply.get("message") or {}
    stamp = message.get("time")
    if not isinstance(stamp, str):
        return None
    return datetime.fromisoformat(stamp).timestamp()
