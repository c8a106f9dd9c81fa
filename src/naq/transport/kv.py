"""Key-value reads and writes for the layers above the NATS boundary, in naq's terms.

Writes go straight to a bucket's subject (``$KV.<bucket>.<key>``) through the connection's
acked publisher, so they can carry a per-key TTL (``Nats-TTL``, which nats-py's ``put`` and
``update`` cannot) and a compare-and-set condition (``Nats-Expected-Last-Subject-Sequence``).
A failed condition raises :class:`~naq.errors.WriteConflictError`; a missing key reads as
``None``. Keys are checked: they become part of a subject.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.api
import nats.js.errors

from .. import constants as c
from ..errors import ConfigurationError, ServerError
from .errors import translate, translated
from .names import is_subject

if TYPE_CHECKING:
    from .connection import Connection

_KV_OPERATION = "KV-Operation"
_MARKER = "Nats-Marker-Reason"  # server-placed expiry/removal markers
_SNAPSHOT_BATCH = 1000
_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class KvEntry:
    """A live key: its value and revision."""

    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class KvChange:
    """One change seen by :func:`watch`: a new value, or ``value=None`` for a deletion.
    ``pending`` is how many more changes the server had queued when it sent this one
    (0: the initial state is complete)."""

    key: str
    value: bytes | None
    revision: int
    pending: int


def stream_name(bucket: str) -> str:
    """The stream a key-value bucket is stored in."""
    return f"KV_{bucket}"


def is_removal(headers: Mapping[str, str] | None, data: bytes) -> bool:
    """True for a message that removes its key (a delete or purge marker) rather than
    setting it."""
    return (headers or {}).get(_KV_OPERATION) in ("DEL", "PURGE") or not data


def subject_prefix(bucket: str) -> str:
    """What every key's subject in ``bucket`` starts with (add a checked key to it)."""
    return f"$KV.{bucket}."


def subject(bucket: str, key: str) -> str:
    """The subject ``key`` of ``bucket`` is stored on (``key`` is checked)."""
    name = f"$KV.{bucket}.{key}"
    if not key or not is_subject(name) or "*" in key or ">" in key:
        raise ConfigurationError(f"invalid key {key[:80]!r} for bucket {bucket}")
    return name


def ttl_header(ttl: float | str) -> str:
    """A ``Nats-TTL`` value: whole seconds (rounded up, at least 1) or ``"never"``."""
    if isinstance(ttl, str):
        return ttl
    if not math.isfinite(ttl):
        raise ConfigurationError(f"invalid TTL {ttl!r}")
    return str(max(1, math.ceil(ttl)))


def _headers(last: int | None, ttl: float | str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if last is not None:
        headers[c.HEADER_EXPECTED_LAST_SUBJECT_SEQ] = str(int(last))
    if ttl is not None:
        headers[c.HEADER_TTL] = ttl_header(ttl)
    return headers


async def get(conn: Connection, bucket: str, key: str) -> KvEntry | None:
    """The value and revision of ``key``; ``None`` when missing, deleted or expired."""
    name = subject(bucket, key)
    kv = await conn.storage.bucket(bucket)
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"read of {name}") from None
    if not entry.value:  # deleted, purged, or an expiry marker (nats-py reports value=None)
        return None
    return KvEntry(key, bytes(entry.value), int(entry.revision or 0))


async def put(
    conn: Connection,
    bucket: str,
    key: str,
    value: bytes,
    *,
    last: int | None = None,
    ttl: float | str | None = None,
) -> int:
    """Write ``key``; with ``last``, only if its latest revision is ``last`` (0: it must not
    exist), else :class:`~naq.errors.WriteConflictError`. ``ttl``: seconds or ``"never"``.
    Returns the new revision."""
    return await (await put_nowait(conn, bucket, key, value, last=last, ttl=ttl))


async def put_nowait(
    conn: Connection,
    bucket: str,
    key: str,
    value: bytes,
    *,
    last: int | None = None,
    ttl: float | str | None = None,
) -> asyncio.Future[int]:
    """:func:`put` without waiting for the server: the future holds the new revision or the
    refusal (pipelining many writes)."""
    name = subject(bucket, key)
    await conn.storage.bucket(bucket)
    return await conn.send(name, value, _headers(last, ttl))


async def create(
    conn: Connection, bucket: str, key: str, value: bytes, ttl: float | str | None = None
) -> int:
    """Write ``key`` only if it does not exist (or was deleted / expired); returns the
    revision or raises :class:`~naq.errors.WriteConflictError`."""
    name = subject(bucket, key)
    kv = await conn.storage.bucket(bucket)
    with translated(f"create of {name}"):
        if ttl is None:
            return int(await kv.create(key, value))
        seconds = float(ttl_header(ttl)) if not isinstance(ttl, str) else None
        return int(await kv.create(key, value, msg_ttl=seconds))


async def delete(conn: Connection, bucket: str, key: str, last: int) -> None:
    """Delete ``key`` only if its latest revision is ``last``."""
    name = subject(bucket, key)
    await conn.storage.bucket(bucket)
    headers = {c.HEADER_EXPECTED_LAST_SUBJECT_SEQ: str(int(last)), _KV_OPERATION: "DEL"}
    await conn.publish(name, b"", headers)


async def purge(conn: Connection, bucket: str, key: str, ttl: float | None = None) -> None:
    """Remove ``key`` and its history (its purge marker expires after ``ttl`` seconds)."""
    name = subject(bucket, key)
    kv = await conn.storage.bucket(bucket)
    with translated(f"purge of {name}"):
        await kv.purge(key, msg_ttl=ttl)


async def keys(conn: Connection, bucket: str) -> list[str]:
    """Every live key of the bucket."""
    kv = await conn.storage.bucket(bucket)
    try:
        return [str(k) for k in await kv.keys()]
    except nats.js.errors.NoKeysError:
        return []
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"key listing of {bucket}") from None


async def last_message(conn: Connection, bucket: str, key: str) -> tuple[int, bytes, bool] | None:
    """``(revision, value, deleted)`` of the newest message on ``key``, delete markers
    included (a lock needs the revision of its delete marker to take it over)."""
    name = subject(bucket, key)
    await conn.storage.bucket(bucket)
    try:
        msg = await conn.js.get_msg(stream_name(bucket), subject=name, direct=True)
    except nats.js.errors.NotFoundError:
        return None
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise translate(exc, f"read of {name}") from None
    headers = msg.headers or {}
    deleted = is_removal(headers, bytes(msg.data or b""))
    return int(msg.seq or 0), bytes(msg.data or b""), deleted


async def snapshot(conn: Connection, bucket: str) -> list[KvEntry]:
    """Every live key of a bucket, read by one pull consumer.

    Not nats-py's ``watchall()``: its "no more values" marker can come before values the
    server already sent (it compares the consumer's pending count with messages the client
    has processed), so a busy bucket could read as empty. A pull consumer delivers nothing
    until asked, so its pending count right after creation is exact, and every message
    carries how many are still to come."""
    with translated(f"snapshot of {bucket}"):
        return await _snapshot(conn, bucket)


async def _snapshot(conn: Connection, bucket: str) -> list[KvEntry]:
    await conn.storage.bucket(bucket)
    js = conn.js
    stream = stream_name(bucket)
    prefix = f"$KV.{bucket}."
    config = nats.js.api.ConsumerConfig(
        deliver_policy=nats.js.api.DeliverPolicy.LAST_PER_SUBJECT,
        ack_policy=nats.js.api.AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(prefix + ">", stream=stream, config=config)
    found: list[KvEntry] = []
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
                    key = msg.subject[len(prefix) :]
                    found.append(KvEntry(key, bytes(msg.data), int(meta.sequence.stream)))
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
    missed = [s for s in (state.subjects or {}) if s not in seen]
    for missed_subject in missed:
        entry = await get(conn, bucket, missed_subject[len(prefix) :])
        if entry is not None:
            found.append(entry)
    return found


class Watch:
    """Changes of every key of a bucket, current values first (``async for change in w``)."""

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher

    def __aiter__(self) -> AsyncIterator[KvChange]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[KvChange]:
        try:
            async for entry in self._watcher:
                if entry is None:  # the initial values are complete
                    yield KvChange("", None, 0, 0)
                    continue
                deleted = entry.operation in ("DEL", "PURGE") or not entry.value
                yield KvChange(
                    str(entry.key),
                    None if deleted else bytes(entry.value),
                    int(entry.revision or 0),
                    int(entry.delta or 0),
                )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise translate(exc, "key-value watch") from None

    async def stop(self) -> None:
        """Stop watching (quietly: the connection may be gone)."""
        try:
            await self._watcher.stop()
        except Exception:  # noqa: BLE001 - closing anyway
            pass


#: Attempts at setting up a watch whose consumer vanished at once (a server restarting).
_WATCH_ATTEMPTS = 5
#: JetStream's error code for "consumer not found".
_CONSUMER_NOT_FOUND = 10014


async def watch(conn: Connection, bucket: str) -> Watch:
    """Watch every key of ``bucket``: its current values, then each change as it happens.

    A watch is an ephemeral consumer: when the server restarts while it is being set up,
    the consumer it just made is gone ("consumer not found"); that is tried again a few
    times (the connection is back by then) before it is an error."""
    kv = await conn.storage.bucket(bucket)
    attempts = 0
    while True:
        try:
            with translated(f"watch of {bucket}"):
                return Watch(await kv.watchall())
        except ServerError as exc:
            attempts += 1
            if exc.err_code != _CONSUMER_NOT_FOUND or attempts >= _WATCH_ATTEMPTS:
                raise
            await asyncio.sleep(0.2 * attempts)
