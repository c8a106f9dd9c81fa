"""Completed and failed jobs per queue, shared by every worker: totals, and how many
finished during the last minute.

One key per queue in the ``naq_stats`` bucket holds ``{"completed": n, "failed": n,
"recent": {slot: [completed, failed]}}``. A worker counts its jobs in memory and adds what
it finished since its last heartbeat with a compare-and-set (at most one per queue per
heartbeat, never one per job), so the totals count each job once however many workers
there are, and a reader sees them at most one heartbeat late. The totals count from the
bucket's creation and never expire.

``recent`` counts the same jobs by the :data:`SLOT_SECONDS`-second slot they finished in
(slot ``floor(epoch / SLOT_SECONDS)``), in the same compare-and-set; each write keeps only
the slots of the last :data:`KEPT_SLOTS` (about 70 s). A reader adds up the slots of the
last minute by its own clock, so a queue nobody writes any more falls to 0 by itself.
Records written before ``recent`` existed read as having none.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
from loguru import logger

from . import constants as c
from .errors import ConfigurationError, WriteConflictError
from .settings import validate_queue_name
from .transport import Connection, kv

#: Compare-and-set attempts before :func:`add` gives up (other workers kept writing).
_CAS_ATTEMPTS = 30
#: Longest pause between two attempts, seconds (random, growing: workers that collided
#: do not collide again in step).
_MAX_BACKOFF = 0.2
#: Width of one slot of the recent counts, seconds.
SLOT_SECONDS = 5
#: Slots a record keeps: the current one and those of the ~70 s before it.
KEPT_SLOTS = 14
#: Slots that make "the last minute": the current one and the 11 before it.
MINUTE_SLOTS = 60 // SLOT_SECONDS


class SlotCounts(msgspec.Struct, array_like=True):
    """Jobs of one queue that finished in one slot: completed, and failed or dead."""

    completed: int = 0
    failed: int = 0


class QueueCounters(msgspec.Struct, kw_only=True):
    """The stored counts of one queue: totals, and recent jobs per slot."""

    completed: int = 0
    failed: int = 0
    recent: dict[int, SlotCounts] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueTotals:
    """What :func:`read_all` finds for one queue."""

    completed: int
    failed: int
    #: jobs completed during the last minute (to the slot), over all workers
    completed_last_minute: int = 0
    #: jobs that failed for good or were dead-lettered during the last minute
    failed_last_minute: int = 0


_decoder = msgspec.json.Decoder(QueueCounters)
_encoder = msgspec.json.Encoder()


def slot_of(moment: float) -> int:
    """The slot a job that finished at ``moment`` (epoch seconds) is counted in."""
    return math.floor(moment / SLOT_SECONDS)


def _decode(queue: str, data: bytes) -> QueueCounters | None:
    try:
        counters = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        logger.warning("the counts of queue {} are unreadable; counting again from 0", queue)
        return None
    return counters


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _slots(
    recent: Mapping[int, tuple[int, int]] | None, completed: int, failed: int, now: float
) -> dict[int, SlotCounts]:
    """``recent`` validated (None: every job in the current slot)."""
    if recent is None:
        return {slot_of(now): SlotCounts(completed, failed)}
    slots: dict[int, SlotCounts] = {}
    for slot, pair in recent.items():
        if isinstance(slot, bool) or not isinstance(slot, int):
            raise ConfigurationError(f"recent slots must be integers, got {slot!r}")
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigurationError(f"recent[{slot}] must be (completed, failed), got {pair!r}")
        slots[slot] = SlotCounts(_count("completed", pair[0]), _count("failed", pair[1]))
    return slots


def _merged(
    current: QueueCounters, completed: int, failed: int, slots: dict[int, SlotCounts], now: float
) -> QueueCounters:
    """``current`` plus the new jobs, with only the slots still worth keeping."""
    oldest = slot_of(now) - KEPT_SLOTS + 1
    recent = {s: n for s, n in current.recent.items() if s >= oldest}
    for slot, added in slots.items():
        if slot < oldest:
            continue
        old = recent.get(slot, SlotCounts())
        recent[slot] = SlotCounts(old.completed + added.completed, old.failed + added.failed)
    return QueueCounters(
        completed=current.completed + completed,
        failed=current.failed + failed,
        recent=dict(sorted(recent.items())),
    )


async def add(
    conn: Connection,
    queue: str,
    completed: int,
    failed: int,
    *,
    recent: Mapping[int, tuple[int, int]] | None = None,
) -> None:
    """Add ``completed`` and ``failed`` jobs to the counts of ``queue`` (compare-and-set,
    retried while other workers write the same key; raises
    :class:`~naq.errors.WriteConflictError` if it never got through).

    ``recent``: the same jobs per slot they finished in (``{slot_of(t): (completed,
    failed)}``); ``None`` counts them all as finished now. Slots older than the kept ones
    are left out."""
    validate_queue_name(queue)
    completed = _count("completed", completed)
    failed = _count("failed", failed)
    now = time.time()
    slots = _slots(recent, completed, failed, now)
    if not completed and not failed:
        return
    for attempt in range(_CAS_ATTEMPTS):
        entry = await kv.get(conn, c.STATS_BUCKET, queue)
        current = _decode(queue, entry.value) if entry is not None else None
        data = _encoder.encode(_merged(current or QueueCounters(), completed, failed, slots, now))
        try:
            if entry is None:
                await kv.create(conn, c.STATS_BUCKET, queue, data)
            else:
                await kv.put(conn, c.STATS_BUCKET, queue, data, last=entry.revision)
        except WriteConflictError:
            await asyncio.sleep(random.uniform(0, min(_MAX_BACKOFF, 0.002 * 2**attempt)))
            continue
        return
    raise WriteConflictError(
        f"could not add to the counts of queue {queue}: "
        f"other writers kept changing them ({_CAS_ATTEMPTS} attempts)"
    )


def _totals(counters: QueueCounters, now: float) -> QueueTotals:
    # a writer's clock may run a little ahead of ours: its newer slots count as now
    first = slot_of(now) - MINUTE_SLOTS + 1
    recent = [n for s, n in counters.recent.items() if s >= first]
    return QueueTotals(
        completed=counters.completed,
        failed=counters.failed,
        completed_last_minute=sum(n.completed for n in recent),
        failed_last_minute=sum(n.failed for n in recent),
    )


async def read_all(conn: Connection, now: float | None = None) -> dict[str, QueueTotals]:
    """The counts of every queue that has any: totals and the last minute's (ending at
    ``now``, epoch seconds; default the current time)."""
    moment = time.time() if now is None else now
    totals: dict[str, QueueTotals] = {}
    for entry in await kv.snapshot(conn, c.STATS_BUCKET):
        counters = _decode(entry.key, entry.value)
        if counters is not None:
            totals[entry.key] = _totals(counters, moment)
    return totals
