"""The ``naq_schedules`` bucket: recurring schedules as JSON, one key per schedule id.

Every change is a compare-and-set on the key's revision (:meth:`ScheduleStore.mutate`), so
a pause or cancel racing with a run being fired is never undone: whoever writes second
re-reads and applies its change to what the first one wrote."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from loguru import logger

from .. import constants as c
from ..errors import WriteConflictError
from ..transport import Connection, kv
from .models import ScheduleRecord, ScheduleStatus, decode_schedule, encode_schedule

#: A finished schedule (``repeat`` reached) is kept this long, then expires by itself.
DONE_TTL = 300.0
_CAS_ATTEMPTS = 50


class Delete:
    """Returned by a :meth:`ScheduleStore.mutate` change to delete the schedule."""


DELETE = Delete()

Change = Callable[[ScheduleRecord], ScheduleRecord | Delete | None]


def _decode(key: str, data: bytes) -> ScheduleRecord | None:
    try:
        return decode_schedule(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        logger.warning("ignoring undecodable schedule {}: {}", key, exc)
        return None


class ScheduleStore:
    """Reads and compare-and-set writes of schedule records (borrows the connection)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def ready(self) -> None:
        """Make sure the bucket exists."""
        await self.conn.ensure_bucket(c.SCHEDULES_BUCKET)

    async def get(self, schedule_id: str) -> tuple[ScheduleRecord, int] | None:
        """The record and its revision, or ``None``."""
        found = await kv.get(self.conn, c.SCHEDULES_BUCKET, schedule_id)
        if found is None:
            return None
        record = _decode(schedule_id, found.value)
        return None if record is None else (record, found.revision)

    async def get_live(self, schedule_id: str) -> tuple[ScheduleRecord, int] | None:
        """Like :meth:`get` but a finished (``done``) schedule counts as missing."""
        found = await self.get(schedule_id)
        if found is None or found[0].status == ScheduleStatus.DONE.value:
            return None
        return found

    async def write(self, record: ScheduleRecord, last: int) -> int:
        """CAS-write ``record`` over revision ``last`` (0: must not exist); new revision."""
        return await (await self.write_nowait(record, last))

    async def write_nowait(self, record: ScheduleRecord, last: int) -> asyncio.Future[int]:
        """Like :meth:`write` but returns at once with a future for the ack (pipelining)."""
        ttl = DONE_TTL if record.status == ScheduleStatus.DONE.value else None
        return await kv.put_nowait(
            self.conn,
            c.SCHEDULES_BUCKET,
            record.schedule_id,
            encode_schedule(record),
            last=last,
            ttl=ttl,
        )

    async def delete(self, schedule_id: str, last: int) -> None:
        """CAS-delete the schedule at revision ``last``."""
        await kv.delete(self.conn, c.SCHEDULES_BUCKET, schedule_id, last)

    async def mutate(self, schedule_id: str, change: Change) -> tuple[ScheduleRecord | None, bool]:
        """Apply ``change`` with compare-and-set, re-reading and retrying on conflicts.

        ``change`` gets a copy of the live record and returns the new one, :data:`DELETE`,
        or ``None`` for "leave it". Returns ``(record now stored or None, existed)``.
        """
        for _ in range(_CAS_ATTEMPTS):
            found = await self.get_live(schedule_id)
            if found is None:
                return None, False
            record, revision = found
            new = change(msgspec.structs.replace(record))
            try:
                if new is None:
                    return record, True
                if isinstance(new, Delete):
                    await self.delete(schedule_id, revision)
                    return None, True
                await self.write(new, revision)
                return new, True
            except WriteConflictError:
                continue
        raise WriteConflictError(
            f"schedule {schedule_id} kept changing; gave up after {_CAS_ATTEMPTS} tries"
        )

    async def all(self) -> list[tuple[ScheduleRecord, int]]:
        """Every stored schedule with its revision (one ordered consumer, not N gets)."""
        found: list[tuple[ScheduleRecord, int]] = []
        for entry in await kv.snapshot(self.conn, c.SCHEDULES_BUCKET):
            record = _decode(entry.key, entry.value)
            if record is not None:
                found.append((record, entry.revision))
        return found
