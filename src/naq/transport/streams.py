"""Reading and trimming naq's streams for the layers above the boundary: stored messages by
sequence or subject, per-subject counts, purges, consumer counts, consumer pauses. Every
``$JS.API`` request naq makes by hand is spelled here, but for the two reads of a consumer's
backlog the metrics make (:mod:`.consumer_backlog`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors

from ..errors import ServerError
from .errors import translate
from .names import check_subject

if TYPE_CHECKING:
    from .connection import Connection

_INFO_TIMEOUT = 30.0
#: JetStream error code: the consumer does not exist.
_CONSUMER_NOT_FOUND = 10014
#: How long the pull request of :func:`wake_consumer` waits on the server, seconds.
_WAKE_EXPIRES = 0.1


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as a stream stores it."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class ConsumerCounts:
    """What one durable consumer holds: waiting (not delivered yet) and unacknowledged."""

    name: str
    pending: int
    ack_pending: int
    paused: bool = False


def pull_subject(stream: str, consumer: str) -> str:
    """Where pull requests for ``consumer`` of ``stream`` go (``MSG.NEXT``)."""
    return check_subject(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")


async def get_message(
    conn: Connection,
    stream: str,
    *,
    seq: int | None = None,
    subject: str | None = None,
    next_from: int | None = None,
    direct: bool = False,
) -> StoredMessage | None:
    """One stored message: by ``seq``; the last on ``subject``; or, with ``next_from``, the
    first at or after that sequence (on ``subject`` if given). ``None`` if there is none."""
    if subject is not None:
        check_subject(subject)
    try:
        if next_from is not None:
            msg = await conn.js.get_msg(stream, seq=next_from, subject=subject, next=True)
        elif seq is not None:
            msg = await conn.js.get_msg(stream, seq=seq, direct=direct)
        else:
            msg = await conn.js.get_msg(stream, subject=subject, direct=direct)
    except nats.js.errors.NotFoundError:
        return None
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"read from stream {stream}") from None
    headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
    return StoredMessage(int(msg.seq or 0), str(msg.subject or ""), bytes(msg.data or b""), headers)


async def delete_message(conn: Connection, stream: str, seq: int) -> bool:
    """Remove message ``seq``; False if it was not there."""
    try:
        return bool(await conn.js.delete_msg(stream, seq))
    except nats.js.errors.NotFoundError:
        return False
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"delete from stream {stream}") from None


async def purge(conn: Connection, stream: str, subject: str, *, below: int | None = None) -> int:
    """Remove the messages on ``subject`` (a filter; wildcards allowed), only those with a
    sequence below ``below`` when given; returns how many were removed."""
    request: dict[str, object] = {"filter": check_subject(subject)}
    if below is not None:
        request["seq"] = int(below)
    data = await conn.api(f"STREAM.PURGE.{stream}", request)
    return int(data.get("purged", 0))


async def subject_counts(conn: Connection, stream: str, subject_filter: str) -> dict[str, int]:
    """Messages per subject matching ``subject_filter`` (every page of the stream info)."""
    check_subject(subject_filter)
    counts: dict[str, int] = {}
    offset = 0
    while True:
        data = await conn.api(
            f"STREAM.INFO.{stream}",
            {"subjects_filter": subject_filter, "offset": offset},
            timeout=_INFO_TIMEOUT,
        )
        page = (data.get("state") or {}).get("subjects") or {}
        counts.update({str(k): int(v) for k, v in page.items()})
        offset += len(page)
        if not page or offset >= int(data.get("total", 0)):
            return counts


async def count_subjects(conn: Connection, stream: str, subject_filter: str) -> int:
    """How many subjects matching ``subject_filter`` hold a message (one request: the server
    counts them and sends no list, the offset being past the end)."""
    check_subject(subject_filter)
    data = await conn.api(
        f"STREAM.INFO.{stream}",
        {"subjects_filter": subject_filter, "offset": 1 << 40},
        timeout=_INFO_TIMEOUT,
    )
    return int(data.get("total", 0))


async def consumer_counts(conn: Connection, stream: str, name: str) -> ConsumerCounts | None:
    """Waiting and unacknowledged counts of one consumer (``None`` if it does not exist)."""
    try:
        info = await conn.js.consumer_info(stream, name)
    except nats.js.errors.NotFoundError:
        return None
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"consumer info {name}") from None
    return _counts(info)


async def consumers(conn: Connection, stream: str) -> list[ConsumerCounts]:
    """Every consumer of ``stream`` with its counts."""
    try:
        infos = await conn.js.consumers_info(stream)
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"consumer listing of {stream}") from None
    return [_counts(info) for info in infos]


def _counts(info: object) -> ConsumerCounts:
    return ConsumerCounts(
        name=str(getattr(info, "name", "") or ""),
        pending=int(getattr(info, "num_pending", 0) or 0),
        ack_pending=int(getattr(info, "num_ack_pending", 0) or 0),
        paused=bool(getattr(info, "paused", False)),
    )


def rfc3339(when: datetime) -> str:
    """``when`` as the RFC 3339 text JetStream reads (UTC, ``Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def pause_consumer(
    conn: Connection, stream: str, name: str, until: str | None
) -> bool | None:
    """Pause consumer ``name`` of ``stream`` until ``until`` (RFC 3339), or resume it when
    ``until`` is ``None`` (``CONSUMER.PAUSE``, nats-server 2.11+); returns whether it is
    paused now, ``None`` if there is no such consumer.

    A paused consumer delivers nothing: pull requests wait (or expire) unanswered, while
    acknowledgements of what it delivered before work as usual."""
    request: dict[str, object] = {} if until is None else {"pause_until": until}
    try:
        data = await conn.api(f"CONSUMER.PAUSE.{stream}.{name}", request)
    except ServerError as exc:
        if exc.err_code == _CONSUMER_NOT_FOUND:
            return None
        raise
    return bool(data.get("paused", False))


def wake_consumer(conn: Connection, stream: str, name: str) -> None:
    """Make a resumed consumer serve the pull requests waiting on it now.

    The server does not look at the requests that waited during a pause when the pause
    ends, only on its next occasion (a new message, a new request, a heartbeat). This is
    such a request, which can never take a job: one message of at most one byte (every
    job is larger), expiring at once. The server answers it with a status nobody reads."""
    body = {"batch": 1, "max_bytes": 1, "expires": int(_WAKE_EXPIRES * 1e9)}
    conn.post(pull_subject(stream, name), json.dumps(body).encode(), conn.new_inbox())
