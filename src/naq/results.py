"""Job records in the results bucket: write with a TTL, read, and wait for a final status
(pushed by a KV watch, never a sleep loop)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec

from . import constants as c
from .batches import batch_key, decode_batch, split_batch_job_id
from .errors import WriteConflictError
from .expiry import read_deadline
from .models import FINAL_STATUS_VALUES, JobRecord, decode_record, encode
from .transport import Connection, Message, encode_headers, kv

_HEADER_BLOCKS: dict[tuple[int, bool], bytes] = {}  # by (TTL, create-if-absent)
#: How long a pushed final write may take to show up in the stored record, seconds.
_CONFIRM_FOR = 1.0
#: Safety re-reads while waiting for a final status, seconds (doubling up to the maximum):
#: a write routed just before our subscription but stored just after our first read is
#: pushed to nobody; the first re-read comes soon, so such a miss costs milliseconds.
_RECHECK_FIRST, _RECHECK_MAX = 0.02, 4.0


def _is_final_payload(data: bytes) -> bool:
    try:
        return decode_record(data).status in FINAL_STATUS_VALUES
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False


_RECORD_PREFIX = kv.subject_prefix(c.RESULTS_BUCKET)
#: Key prefix of the dependency keys in the results bucket (``deps.<P>``: "P has
#: dependants"; ``deps.<P>.<C>``: "C depends on P"); a job id never contains a dot.
DEPENDANTS_PREFIX = "deps."
_FINAL_BLOCKS: dict[int | str, bytes] = {}
_NEVER_BLOCK = encode_headers({c.HEADER_TTL: "never"})


def dependants_marker_subject(job_id: str) -> str:
    """The subject of the marker "others depend on ``job_id``" (``job_id`` checked already)."""
    return _RECORD_PREFIX + DEPENDANTS_PREFIX + job_id


def final_block(job_id: str, ttl: int) -> bytes:
    """Headers of a job's final record write that goes through only while nobody depends on
    the job: the server refuses it (wrong last sequence) once the dependants marker exists."""
    prefix = _FINAL_BLOCKS.get(ttl)
    if prefix is None:
        head = encode_headers(
            {
                c.HEADER_TTL: str(int(ttl)),
                c.HEADER_EXPECTED_LAST_SUBJECT_SEQ: "0",
                c.HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: "-",
            }
        )
        prefix = _FINAL_BLOCKS[ttl] = head[: -len(b"-\r\n\r\n")]
    return prefix + dependants_marker_subject(job_id).encode() + b"\r\n\r\n"


def record_subject_of_valid_id(job_id: str) -> str:
    """:func:`record_subject` for an id checked already (a job's own, on hot paths)."""
    return _RECORD_PREFIX + job_id


def record_subject(job_id: str) -> str:
    """The KV subject a job's record is stored on (the id is checked)."""
    return kv.subject(c.RESULTS_BUCKET, job_id)


def absent_headers(ttl: int) -> dict[str, str]:
    """Headers of a create-if-absent record write expiring after ``ttl`` seconds."""
    return {c.HEADER_TTL: str(int(ttl)), c.HEADER_EXPECTED_LAST_SUBJECT_SEQ: "0"}


def absent_block(ttl: int) -> bytes:
    """:func:`absent_headers` encoded for the wire."""
    return _header_block(ttl, absent=True)


def _header_block(ttl: int, *, absent: bool) -> bytes:
    """A record write's encoded headers: its TTL, and "create only if absent" (cached)."""
    block = _HEADER_BLOCKS.get((ttl, absent))
    if block is None:
        headers = absent_headers(ttl) if absent else {c.HEADER_TTL: str(int(ttl))}
        block = _HEADER_BLOCKS[ttl, absent] = encode_headers(headers)
    return block


class ResultStore:
    """Reads and writes job records; borrows a :class:`Connection` (never closes it)."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._ready = False

    @property
    def connection(self) -> Connection:
        """The connection the store borrows."""
        return self._conn

    async def ready(self) -> None:
        """Make sure the bucket exists (looked up once per store)."""
        if not self._ready:
            await self._conn.ensure_bucket(c.RESULTS_BUCKET)
            self._ready = True

    async def put(self, record: JobRecord, ttl: int) -> None:
        """Store ``record`` (replacing any earlier one), expiring after ``ttl`` seconds;
        waits for the server to confirm it is stored."""
        await self.ready()
        await self.put_nowait(record, ttl)

    def put_nowait(self, record: JobRecord, ttl: int) -> asyncio.Future[int]:
        """:meth:`put` for a store that is :meth:`ready`, without a coroutine: the future
        resolves once the server stored the record."""
        return self.put_encoded_nowait(record.job_id, encode(record), ttl)

    def put_encoded_nowait(self, job_id: str, data: bytes, ttl: int) -> asyncio.Future[int]:
        """:meth:`put_nowait` of a record encoded already. ``job_id`` must be a valid job
        id (the worker checked it; the boundary still refuses anything unsafe on the wire)."""
        block = _header_block(ttl, absent=False)
        return self._conn.send_nowait(record_subject_of_valid_id(job_id), data, block)

    def put_final_nowait(self, job_id: str, data: bytes, ttl: int) -> asyncio.Future[int]:
        """Store a job's final record (encoded) unless others depend on the job: then the
        future fails with :class:`WriteConflictError` and nothing is written (see
        :mod:`naq.dependencies`). ``job_id`` must be a valid job id."""
        return self._conn.send_nowait(
            record_subject_of_valid_id(job_id), data, final_block(job_id, ttl)
        )

    async def put_pinned(self, job_id: str, data: bytes) -> None:
        """Store a record (encoded) that never expires: a job others still depend on."""
        await self.ready()
        await self._conn.send_nowait(record_subject_of_valid_id(job_id), data, _NEVER_BLOCK)

    async def update(self, record: JobRecord, revision: int, ttl: int | str) -> bool:
        """Compare-and-set: store ``record`` only if the key is still at ``revision``."""
        try:
            await kv.put(
                self._conn, c.RESULTS_BUCKET, record.job_id, encode(record), last=revision, ttl=ttl
            )
        except WriteConflictError:
            return False
        return True

    async def create_if_absent(self, record: JobRecord, ttl: int | str) -> bool:
        """Store ``record`` only if no record with its id exists; False if one does."""
        try:
            await kv.create(self._conn, c.RESULTS_BUCKET, record.job_id, encode(record), ttl)
        except WriteConflictError:
            return False
        return True

    async def create(self, record: JobRecord, ttl: int | str) -> JobRecord | None:
        """Store ``record`` only if no record with its id exists; else return the existing one."""
        for _ in range(2):  # the second time: the old record expired between create and get
            try:
                await kv.create(self._conn, c.RESULTS_BUCKET, record.job_id, encode(record), ttl)
            except WriteConflictError:
                existing = await self.get(record.job_id)
                if existing is not None:
                    return existing
                continue
            return None
        return await self.get(record.job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None`` if there is none."""
        entry = await self.get_entry(job_id)
        return entry[0] if entry is not None else None

    async def get_entry(self, job_id: str) -> tuple[JobRecord, int] | None:
        """The record and its revision (for compare-and-set), or ``None``."""
        entry = await kv.get(self._conn, c.RESULTS_BUCKET, job_id)
        if entry is None:
            return await self._batch_entry(job_id)
        try:
            return decode_record(entry.value), entry.revision
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def _batch_entry(self, job_id: str) -> tuple[JobRecord, int] | None:
        """A job of an ``enqueue_many`` batch that has no record of its own yet: pending,
        described by its batch record. Revision 0: a compare-and-set creates the record."""
        parts = split_batch_job_id(job_id)
        if parts is None:
            return None
        entry = await kv.get(self._conn, c.RESULTS_BUCKET, batch_key(parts[0]))
        if entry is None:
            return None
        try:
            record = decode_batch(entry.value).pending_record(job_id, parts[1])
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return (record, 0) if record is not None else None

    async def wait_final(self, job_id: str, timeout: float) -> JobRecord | None:
        """Wait up to ``timeout`` s for the job to reach a final status; the latest record.

        Pushed, not polled: a core subscription on the record's subject wakes the waiter on
        every write. The push can arrive a moment before the stream has stored the write, so
        a final status seen in a push is confirmed by re-reading the stored record (briefly
        retried); a write the stream refused never counts. A job that has not started by its
        ``expires_at`` never will: the wait ends then (see :func:`naq.expiry.as_read`).
        """
        changed = asyncio.Event()
        pushed_final = False

        def on_write(msg: Message) -> None:
            nonlocal pushed_final
            if _is_final_payload(msg.data):
                pushed_final = True
            changed.set()

        # No flush after subscribing: the server handles this connection's SUB before the
        # read below, so every write the read does not see is pushed to us.
        sub = await self._conn.subscribe(record_subject(job_id), on_write)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        recheck = _RECHECK_FIRST
        first = True
        try:
            while True:
                changed.clear()
                expect_final, pushed_final = pushed_final, False
                record = await self._confirmed(job_id, expect_final=expect_final)
                if record is not None and record.status in FINAL_STATUS_VALUES:
                    return record
                if first and not changed.is_set():
                    # A write routed just before our SUB is pushed to nobody, and the stream
                    # may store it just after our first read: read once more, a round trip
                    # later (a job that finishes as we start waiting is the common case).
                    first = False
                    continue
                first = False
                remaining = deadline - loop.time()
                expiry = read_deadline(record) if record is not None else None
                if expiry is not None:  # a job not started by then never will be: stop then
                    remaining = min(remaining, expiry - time.time())
                if remaining <= 0:
                    return record
                # and re-read now and then as well, should the stream be slower than that
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(remaining, recheck))
                recheck = min(recheck * 2, _RECHECK_MAX)
        finally:
            await sub.unsubscribe()

    async def _confirmed(self, job_id: str, *, expect_final: bool) -> JobRecord | None:
        """The stored record; when a final write was pushed, wait briefly until it is stored."""
        record = await self.get(job_id)
        delay = 0.005
        while expect_final and (record is None or record.status not in FINAL_STATUS_VALUES):
            if delay > _CONFIRM_FOR:
                break  # the stream refused it after all: keep waiting for the next write
            await asyncio.sleep(delay)
            delay *= 2
            record = await self.get(job_id)
        return record
