"""What the elected scheduler does: keep a timeline of the schedules (loaded once, then
followed with a KV watch) and enqueue each run when it is due.

A run is first *claimed* by a compare-and-set of the schedule (runs + 1, next run), then
published. A stale leader's claim fails on the revision; a claim that succeeded but whose
publish was lost (crash) is published again by the next leader, and the stream's duplicate
window (``Nats-Msg-Id`` = run job id) keeps any repeat out."""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any

import msgspec
from loguru import logger

from .. import constants as c
from ..errors import NaqConnectionError, WriteConflictError
from ..settings import Settings
from ..transport import Connection, KvChange, kv
from .batch import LostLeadership, advance, decide, fire_many, log_misfire
from .lock import LeaderLock
from .models import ScheduleRecord, ScheduleStatus, decode_schedule
from .runs import RunPublisher
from .store import ScheduleStore
from .timeline import Timeline

#: Runs fired concurrently within one tick.
FIRE_CONCURRENCY = 256
#: Successor run times computed per loop step (croniter costs 0.1-0.3 ms each): a few
#: while runs are due soon, more while idle.
PRECOMPUTE_BUSY = 16
PRECOMPUTE_IDLE = 256
#: Successors are computed for schedules due within this many seconds.
PRECOMPUTE_HORIZON = 30.0
_MAX_SLEEP = 1.0
_CAS_ATTEMPTS = 20
_TRANSIENT = (NaqConnectionError, OSError, TimeoutError)


class LeaderSession:
    """One term as leader; :meth:`run` returns when the term ends (stop, lost lock, resync)."""

    def __init__(
        self,
        conn: Connection,
        settings: Settings,
        lock: LeaderLock,
        *,
        grace: float,
        stats: dict[str, int],
    ) -> None:
        self.conn = conn
        self.lock = lock
        self.grace = grace
        self.stats = stats
        self.timeline = Timeline()
        self.store = ScheduleStore(conn)
        self.publisher = RunPublisher(conn, settings)
        self.wake = asyncio.Event()
        self.ended: str | None = None
        self._needs_successor: list[tuple[float, str]] = []  # heap of (next_run, id)
        self.unpublished: list[tuple[ScheduleRecord, float]] = []
        self._gate = asyncio.Semaphore(FIRE_CONCURRENCY)

    def end(self, reason: str) -> None:
        """Ask the session to finish (thread-unsafe; call on the loop)."""
        if self.ended is None:
            self.ended = reason
        self.wake.set()

    # -- the term -------------------------------------------------------------------------
    async def run(self) -> None:
        """Load the schedules, then fire due runs until the term ends."""
        watcher = await kv.watch(self.conn, c.SCHEDULES_BUCKET)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self._load(watcher)
            tasks = [
                asyncio.create_task(self._follow(watcher), name="naq-scheduler-watch"),
                asyncio.create_task(self._keep_lock(), name="naq-scheduler-lock"),
            ]
            await self._recover()
            await self._loop()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=self.lock.ttl)
            await watcher.stop()

    async def _load(self, watcher: kv.Watch) -> None:
        started = time.monotonic()
        async for change in watcher:
            if not change.key:  # the bucket is empty
                break
            self._take(change)
            if not change.pending:
                break
        took = time.monotonic() - started
        self.stats["loaded"] = len(self.timeline)
        self.stats["load_ms"] = round(took * 1000)
        logger.info("scheduler leader loaded {} schedules in {:.2f} s", len(self.timeline), took)

    def _take(self, change: KvChange) -> None:
        revision = change.revision
        known = self.timeline.records.get(change.key)
        if known is not None and known[1] >= revision:
            return  # our own write coming back, or older news
        if change.value is None:
            self.timeline.remove(change.key, revision)
            return
        try:
            record = decode_schedule(change.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.warning("ignoring undecodable schedule {}: {}", change.key, exc)
            return
        if self.timeline.apply(record, revision):
            self._want_successor(record)

    async def _follow(self, watcher: kv.Watch) -> None:
        try:
            async for change in watcher:
                if change.key:
                    self._take(change)
                    self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - rebuild from scratch
            logger.warning("schedule watch failed ({}); reloading", exc)
        self.end("watch ended")

    async def _keep_lock(self) -> None:
        interval = max(0.2, self.lock.ttl / 3)
        # a loop on `ended`, not `while True`: a nats-py request interrupted by our cancel
        # can swallow the CancelledError, and the term must still end
        while self.ended is None:
            await asyncio.sleep(interval)
            if not await self.lock.renew() or not self.lock.held:
                self.end("lost the lock")
                return

    # -- firing ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        timeline = self.timeline
        while self.ended is None:
            if not self.lock.held:
                self.end("lock expired")
                return
            self.wake.clear()
            due = timeline.pop_due(time.time())
            if due:
                await self._fire_batch(due)
                continue
            if self.unpublished:
                await self._publish_leftovers()
            nxt = timeline.next_due()
            idle = nxt is None or nxt - time.time() > 0.05
            if self._precompute(PRECOMPUTE_IDLE if idle else PRECOMPUTE_BUSY) and idle:
                continue  # more may be waiting; the loop checks for due runs first
            nxt = timeline.next_due()
            delay = _MAX_SLEEP if nxt is None else min(_MAX_SLEEP, nxt - time.time())
            if delay > 0:
                try:
                    await asyncio.wait_for(self.wake.wait(), delay)
                except TimeoutError:
                    pass

    def _want_successor(self, record: ScheduleRecord) -> None:
        if record.status == ScheduleStatus.ACTIVE.value and record.next_run is not None:
            heapq.heappush(self._needs_successor, (record.next_run, record.schedule_id))

    def _precompute(self, budget: int) -> bool:
        """Compute the run after the next one for schedules due soon, soonest first, so
        firing needs no cron maths. Returns True if it did any work."""
        needs = self._needs_successor
        horizon = time.time() + PRECOMPUTE_HORIZON
        timeline = self.timeline
        worked = False
        while needs and needs[0][0] <= horizon and budget > 0:
            upcoming, sid = heapq.heappop(needs)
            known = timeline.records.get(sid)
            if known is None or known[0].next_run != upcoming:
                continue  # stale
            cached = timeline.successors.get(sid)
            if cached is not None and cached[0] == upcoming:
                continue
            budget -= 1
            worked = True
            try:
                timeline.successors[sid] = (upcoming, known[0].rule.next_after(upcoming))
            except Exception as exc:  # noqa: BLE001 - a broken rule must not stop the loop
                logger.warning("schedule {}: cannot compute its next run: {}", sid, exc)
        return worked

    def claimed(self, record: ScheduleRecord, revision: int) -> None:
        """Our claim of a run was stored: take the new state."""
        self.timeline.apply(record, revision)
        self._want_successor(record)

    async def _fire_batch(self, due: list[tuple[ScheduleRecord, int]]) -> None:
        try:
            conflicts = await fire_many(self, due)
        except LostLeadership:
            self.end("lost the lock")
            return
        except _TRANSIENT as exc:
            logger.warning("scheduler: {}; retrying the due runs", exc)
            for record, _rev in due:
                self.timeline.retry_at(record.schedule_id, time.time() + 1.0)
            return
        if not conflicts:
            return
        results = await asyncio.gather(
            *(self._fire_guarded(rec, rev) for rec, rev in conflicts), return_exceptions=True
        )
        for result in results:
            if isinstance(result, LostLeadership):
                self.end("lost the lock")
            elif isinstance(result, BaseException) and not isinstance(
                result, asyncio.CancelledError
            ):
                logger.error("scheduler error: {!r}", result)

    async def _fire_guarded(self, record: ScheduleRecord, revision: int) -> None:
        async with self._gate:
            try:
                await self._fire(record, revision)
            except _TRANSIENT as exc:
                logger.warning(
                    "schedule {}: run not enqueued yet ({}); retrying", record.schedule_id, exc
                )
                self.timeline.retry_at(record.schedule_id, time.time() + 1.0)

    async def _fire(self, record: ScheduleRecord, revision: int) -> None:
        """Claim the due run of one schedule by compare-and-set, then publish it."""
        sid = record.schedule_id
        for _ in range(_CAS_ATTEMPTS):
            if self.ended is not None or not self.lock.held:
                raise LostLeadership
            now = time.time()
            if record.status != ScheduleStatus.ACTIVE.value or record.next_run is None:
                return
            if record.next_run > now:  # moved to later meanwhile
                self.timeline.retry_at(sid, record.next_run)
                return
            decision = decide(self, record, now)
            new = advance(record, decision.fire_at, decision.next_run, now)
            try:
                new_revision = await self.store.write(new, revision)
            except WriteConflictError:
                found = await self.store.get(sid)
                if found is None:
                    self.timeline.remove(sid, revision + 1)
                    return
                record, revision = found
                self.timeline.apply(record, revision)
                continue
            self.claimed(new, new_revision)
            log_misfire(record, decision)
            if decision.fire_at is not None:
                await self._publish(new, decision.fire_at)
            return
        logger.warning("schedule {} kept changing; will look again", sid)
        self.timeline.retry_at(sid, time.time() + 0.5)

    async def _publish(self, record: ScheduleRecord, run_at: float, careful: bool = False) -> None:
        claimed = record.claimed_at or time.time()
        careful = careful or time.time() - claimed > c.DUPLICATE_WINDOW - 10
        try:
            job_id = await self.publisher.publish(record, run_at, careful=careful)
        except _TRANSIENT as exc:
            logger.warning("run of {} not published yet ({}); retrying", record.schedule_id, exc)
            self.unpublished.append((record, run_at))
            return
        self.stats["runs"] = self.stats.get("runs", 0) + 1
        logger.debug("schedule {}: enqueued run {}", record.schedule_id, job_id)

    async def _publish_leftovers(self) -> None:
        leftovers, self.unpublished = self.unpublished, []
        for record, run_at in leftovers:
            if not self.lock.held:
                raise LostLeadership
            await self._publish(record, run_at, careful=True)

    async def _recover(self) -> None:
        """Publish again the runs claimed shortly before this term (a crashed leader may have
        claimed them without publishing); duplicates are dropped by the stream."""
        window = min(c.DUPLICATE_WINDOW - 10, 3 * self.lock.ttl + 10)
        now = time.time()
        recent = [
            rec
            for rec, _rev in self.timeline.records.values()
            if rec.last_run is not None and rec.claimed_at and now - rec.claimed_at < window
        ]
        for start in range(0, len(recent), FIRE_CONCURRENCY):
            chunk = recent[start : start + FIRE_CONCURRENCY]
            await asyncio.gather(
                *(self._publish(r, r.last_run or 0.0, careful=True) for r in chunk)
            )
        if recent:
            logger.info(
                "re-published {} recently claimed runs (duplicates are dropped)", len(recent)
            )
