"""Completed and failed totals per queue, shared by every worker.

One key per queue in the ``naq_stats`` bucket holds ``{"completed": n, "failed": n}``. A
worker counts its jobs in memory and adds what it finished since its last heartbeat with a
compare-and-set (at most one per queue per heartbeat, never one per job), so the totals
count each job once however many workers there are, and a reader sees them at most one
heartbeat late. They count from the bucket's creation and never expire.
"""

from __future__ import annotations

import asyncio
import random

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


class QueueCounters(msgspec.Struct, kw_only=True):
    """The stored totals of one queue: jobs completed, and jobs failed for good or dead."""

    completed: int = 0
    failed: int = 0


_decoder = msgspec.json.Decoder(QueueCounters)
_encoder = msgspec.json.Encoder()


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


async def add(conn: Connection, queue: str, completed: int, failed: int) -> None:
    """Add ``completed`` and ``failed`` jobs to the totals of ``queue`` (compare-and-set,
    retried while other workers write the same key; raises
    :class:`~naq.errors.WriteConflictError` if it never got through)."""
    validate_queue_name(queue)
    completed = _count("completed", completed)
    failed = _count("failed", failed)
    if not completed and not failed:
        return
    for attempt in range(_CAS_ATTEMPTS):
        entry = await kv.get(conn, c.STATS_BUCKET, queue)
        current = _decode(queue, entry.value) if entry is not None else None
        current = current or QueueCounters()
        total = QueueCounters(
            completed=current.completed + completed, failed=current.failed + failed
        )
        data = _encoder.encode(total)
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


async def read_all(conn: Connection) -> dict[str, tuple[int, int]]:
    """``{queue: (completed, failed)}`` of every queue that has totals."""
    totals: dict[str, tuple[int, int]] = {}
    for entry in await kv.snapshot(conn, c.STATS_BUCKET):
        counters = _decode(entry.key, entry.value)
        if counters is not None:
            totals[entry.key] = (counters.completed, counters.failed)
    return totals
