"""Firing many due runs at once, pipelined: claims (compare-and-set writes) for a chunk of
schedules go out together, each run's job is published as soon as its claim is confirmed,
and the acks are awaited per chunk, not per message. A claim that hits a conflict is handed
back to be retried one by one (re-read, re-decided)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from loguru import logger

from ..transport import is_conflict
from .misfire import Plan, plan
from .models import ScheduleRecord, ScheduleStatus

if TYPE_CHECKING:
    from .leader import LeaderSession

#: Schedules claimed together before their jobs are published.
CHUNK = 128
_ACK_TIMEOUT = 10.0
_ACTIVE = ScheduleStatus.ACTIVE.value


class LostLeadership(Exception):
    """The lock is no longer ours: stop acting at once."""


def advance(
    record: ScheduleRecord, fire_at: float | None, next_run: float, now: float
) -> ScheduleRecord:
    """The schedule after deciding one due run (fired or skipped)."""
    runs = record.runs + (1 if fire_at is not None else 0)
    finished = record.repeat is not None and runs >= record.repeat
    return msgspec.structs.replace(
        record,
        runs=runs,
        last_run=fire_at if fire_at is not None else record.last_run,
        claimed_at=now if fire_at is not None else record.claimed_at,
        next_run=None if finished else next_run,
        status=ScheduleStatus.DONE.value if finished else record.status,
        updated_at=now,
    )


def decide(session: LeaderSession, record: ScheduleRecord, now: float) -> Plan:
    """The misfire-aware plan for a due schedule, using a precomputed successor if any."""
    assert record.next_run is not None
    due = record.next_run
    cached = session.timeline.successors.get(record.schedule_id)
    successor = cached[1] if cached is not None and cached[0] == due else None
    return plan(record.rule, due, now, record.misfire, session.grace, successor)


@dataclass(slots=True)
class _Claim:
    record: ScheduleRecord
    revision: int
    new: ScheduleRecord
    decision: Plan
    future: asyncio.Future[Any]


def log_misfire(record: ScheduleRecord, decision: Plan) -> None:
    """One line when runs were missed (after downtime)."""
    if decision.missed:
        logger.info(
            "schedule {} missed runs (misfire={}); {}",
            record.schedule_id,
            record.misfire,
            "enqueued one catch-up run" if decision.fire_at is not None else "skipped them",
        )


async def fire_many(
    session: LeaderSession, due: list[tuple[ScheduleRecord, int]]
) -> list[tuple[ScheduleRecord, int]]:
    """Claim and publish the due runs; returns the schedules whose claim conflicted."""
    conflicts: list[tuple[ScheduleRecord, int]] = []
    published: list[tuple[ScheduleRecord, float, asyncio.Future[Any]]] = []
    for start in range(0, len(due), CHUNK):
        if session.ended is not None or not session.lock.held:
            raise LostLeadership
        claims: list[_Claim] = []
        now = time.time()
        for record, revision in due[start : start + CHUNK]:
            if record.status != _ACTIVE or record.next_run is None:
                continue
            if record.next_run > now:  # moved to later meanwhile
                session.timeline.retry_at(record.schedule_id, record.next_run)
                continue
            decision = decide(session, record, now)
            new = advance(record, decision.fire_at, decision.next_run, now)
            future = await session.store.write_nowait(new, revision)
            claims.append(_Claim(record, revision, new, decision, future))
        if not claims:
            continue
        await asyncio.wait([c.future for c in claims], timeout=_ACK_TIMEOUT)
        for claim in claims:
            future = claim.future
            if not future.done():
                future.cancel()
                session.timeline.retry_at(claim.record.schedule_id, time.time() + 1.0)
                continue
            error = future.exception()
            if error is not None:
                if is_conflict(error):
                    conflicts.append((claim.record, claim.revision))
                else:
                    logger.warning("schedule {}: claim failed: {}", claim.record.schedule_id, error)
                    session.timeline.retry_at(claim.record.schedule_id, time.time() + 1.0)
                continue
            session.claimed(claim.new, future.result())
            log_misfire(claim.record, claim.decision)
            fire_at = claim.decision.fire_at
            if fire_at is not None:
                try:
                    _job_id, ack = await session.publisher.send_nowait(claim.new, fire_at)
                except Exception as exc:  # noqa: BLE001 - retried by the loop
                    logger.warning("run of {} not published yet: {}", claim.record.schedule_id, exc)
                    session.unpublished.append((claim.new, fire_at))
                    continue
                published.append((claim.new, fire_at, ack))
    if published:
        await asyncio.wait([ack for _, _, ack in published], timeout=_ACK_TIMEOUT)
    for record, fire_at, ack in published:
        if ack.done() and ack.exception() is None:
            session.stats["runs"] = session.stats.get("runs", 0) + 1
            continue
        if not ack.done():
            ack.cancel()
        session.unpublished.append((record, fire_at))  # published again (deduplicated)
    return conflicts
