"""Compare-and-set writes to naq's key-value buckets, with a per-key TTL where needed.

nats-py's ``KeyValue.update`` cannot carry a TTL, so these publish to the bucket's subject
with ``Nats-Expected-Last-Subject-Sequence`` themselves (what ``update`` does) plus
``Nats-TTL``. A revision mismatch raises ``KeyWrongLastSequenceError``."""

from __future__ import annotations

import asyncio
import math

import nats.js.errors
from nats.js.kv import KeyValue

from .. import constants as c
from ..connection import Connection

_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = (10071, 10164)
_KV_OPERATION = "KV-Operation"
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


async def snapshot(kv: KeyValue) -> list[tuple[str, bytes, int]]:
    """Every live ``(key, value, revision)`` of a bucket, streamed by one ordered consumer."""
    watcher = await kv.watchall(ignore_deletes=True)
    found: list[tuple[str, bytes, int]] = []
    try:
        async for entry in watcher:
            if entry is None:
                break
            if entry.value:
                found.append((entry.key, bytes(entry.value), int(entry.revision or 0)))
            if not entry.delta:
                break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return found
