"""Compare-and-set writes to naq's key-value buckets, with a per-key TTL where needed.

nats-py's ``KeyValue.update`` cannot carry a TTL, so these publish to the bucket's subject
with ``Nats-Expected-Last-Subject-Sequence`` themselves (what ``update`` does) plus
``Nats-TTL``. A revision mismatch raises ``KeyWrongLastSequenceError``."""

from __future__ import annotations

import asyncio
import math

import nats.errors
import nats.js.api
import nats.js.errors
from nats.js.kv import KeyValue

from .. import constants as c
from ..connection import Connection

_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = (10071, 10164)
_KV_OPERATION = "KV-Operation"
_MARKER = "Nats-Marker-Reason"  # server-placed expiry/removal markers
_SNAPSHOT_BATCH = 1000
_TIMEOUT = 10.0


def _ttl_header(ttl: float | str) -> str:
    if isinstance(ttl, str):  # e.g. "never"
        return ttl
    return str(max(1, math.ceil(ttl)))


def is_conflict(exc: BaseException | None) -> bool:
    """True for a compare-and-set revision mismatch (raw or translated)."""
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code in _WRONG_LAST_SEQUENCE


async def cas_put_nowait(
    conn: Connection,
    bucket: str,
    key: str,
    payload: bytes,
    last: int,
    ttl: float | str | None = None,
) -> asyncio.Future[int]:
    """Send a compare-and-set write without waiting; the future holds the new revision or
    the refusal (see :func:`is_conflict`). The bucket must exist."""
    return await conn.send(f"$KV.{bucket}.{key}", payload, _headers(last, ttl))


def _headers(last: int, ttl: float | str | None) -> dict[str, str]:
    headers = {_EXPECTED_LAST_SUBJECT_SEQ: str(int(last))}
    if ttl is not None:
        headers[c.HEADER_TTL] = _ttl_header(ttl)
    return headers


async def cas_put(
    conn: Connection,
    bucket: str,
    key: str,
    payload: bytes,
    last: int,
    ttl: float | str | None = None,
) -> int:
    """Write ``key`` only if its latest revision is ``last`` (0 = must not exist).

    ``ttl``: seconds (rounded up) or ``"never"``; ``None`` sends no TTL header.

    Returns the new revision; raises ``KeyWrongLastSequenceError`` if someone wrote first.
    """
    await conn.kv(bucket)
    try:
        ack = await conn.js.publish(
            f"$KV.{bucket}.{key}", payload, headers=_headers(last, ttl), timeout=_TIMEOUT
        )
    except nats.js.errors.APIError as err:
        if err.err_code in _WRONG_LAST_SEQUENCE:
            raise nats.js.errors.KeyWrongLastSequenceError(description=err.description) from None
        raise
    return int(ack.seq)


async def cas_delete(conn: Connection, bucket: str, key: str, last: int) -> None:
    """Delete ``key`` only if its latest revision is ``last``."""
    await conn.kv(bucket)
    headers = {_EXPECTED_LAST_SUBJECT_SEQ: str(int(last)), _KV_OPERATION: "DEL"}
    try:
        await conn.js.publish(f"$KV.{bucket}.{key}", b"", headers=headers)
    except nats.js.errors.APIError as err:
        if err.err_code in _WRONG_LAST_SEQUENCE:
            raise nats.js.errors.KeyWrongLastSequenceError(description=err.description) from None
        raise


async def get_entry(kv: KeyValue, key: str) -> tuple[bytes, int] | None:
    """Value and revision of ``key``; ``None`` when missing, deleted or expired."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    if not entry.value:  # deleted, purged, or an expiry marker
        return None
    return bytes(entry.value), int(entry.revision or 0)


async def snapshot(conn: Connection, bucket: str) -> list[tuple[str, bytes, int]]:
    """Every live ``(key, value, revision)`` of a bucket, read by one pull consumer.

    Not nats-py's ``watchall()``: its "no more values" marker can come before values the
    server already sent (it compares the consumer's pending count with messages the client
    has processed), so a busy bucket could read as empty. A pull consumer delivers nothing
    until asked, so its pending count right after creation is exact, and every message
    carries how many are still to come."""
    await conn.kv(bucket)
    js = conn.js
    stream = f"KV_{bucket}"
    prefix = f"$KV.{bucket}."
    config = nats.js.api.ConsumerConfig(
        deliver_policy=nats.js.api.DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=nats.js.api.AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(prefix + ">", stream=stream, config=config)
    found: list[tuple[str, bytes, int]] = []
    seen: set[str] = set()
    name: str | None = None
    try:
        info = await sub.consumer_info()
        name, pending = info.name, int(info.num_pending or 0)
        while pending > 0:
            try:
                messages = await sub.fetch(min(pending, _SNAPSHOT_BATCH), timeout=_TIMEOUT)
            except nats.errors.TimeoutError:  # the rest expired meanwhile
                pending = int((await sub.consumer_info()).num_pending or 0)
                continue
            for msg in messages:
                meta = msg.metadata
                pending = int(meta.num_pending)
                seen.add(msg.subject)
                headers = msg.headers or {}
                if msg.data and _KV_OPERATION not in headers and _MARKER not in headers:
                    found.append((msg.subject[len(prefix) :], msg.data, meta.sequence.stream))
    finally:
        try:
            await sub.unsubscribe()
            if name is not None:
                await js.delete_consumer(stream, name)
        except Exception:  # noqa: BLE001 - it expires by itself (inactive_threshold)
            pass
    # A key rewritten just as the consumer was created can be skipped by it (its old
    # revision is gone before delivery, the new one counts as already "last"): read any
    # key the stream has but the consumer did not deliver, one by one.
    state = (await js.stream_info(stream, subjects_filter=prefix + ">")).state
    missed = [subject for subject in (state.subjects or {}) if subject not in seen]
    if missed:
        kv = await conn.kv(bucket)
        for subject in missed:
            entry = await get_entry(kv, subject[len(prefix) :])
            if entry is not None:
                found.append((subject[len(prefix) :], *entry))
    return found
