"""Enforcing shared limits across every worker: concurrency slots and rate tokens, kept in
the ``naq_limit_state`` bucket and changed only by compare-and-set (see :mod:`naq.limits`
for the definitions).

* **Concurrency**: a limit of N has slot keys ``slot.<key>.<n>`` (``n`` < N). Taking a slot is
  creating one of them (create-if-absent, so two workers never hold the same one) with a
  TTL of :data:`SLOT_LEASE` seconds; its holder renews it while the job runs and purges it
  when the job ends. A worker that dies stops renewing: its slots expire within the lease.
* **Rate**: a generic cell rate algorithm per key (``rate.<key>``: the theoretical arrival
  time of the next start): at most ``count`` starts per ``per`` seconds on average, with
  bursts of up to a tenth of ``count``. Each start is one compare-and-set.

A job that cannot start is not run and costs nothing here: :meth:`Limiter.acquire` gives
back the slots it took for it and answers how long to wait.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger

from . import constants as c
from .errors import WriteConflictError
from .limits import ConcreteLimit
from .transport import Connection, kv, streams

#: Seconds a concurrency slot lives without renewal (a dead holder's slot comes back then).
SLOT_LEASE = 15.0
#: Seconds between renewals of the slots a worker holds.
RENEW_EVERY = 4.0
#: Seconds a job waits before it asks again for a concurrency slot that was taken.
SLOT_RETRY = 0.2
#: Compare-and-set attempts on a rate key before the job is told to come back a moment later.
_RATE_ATTEMPTS = 5
_STATE_STREAM = kv.stream_name(c.LIMIT_STATE_BUCKET)


@dataclass(slots=True)
class Slot:
    """A concurrency slot held: its key and the revision written last."""

    key: str
    revision: int
    lost: bool = False  # a renewal found it taken over (it had expired): not ours to purge


@dataclass(slots=True)
class Permit:
    """What a job holds while it runs: its concurrency slots."""

    slots: list[Slot] = field(default_factory=list)
    released: bool = False


@dataclass(frozen=True, slots=True)
class Denied:
    """The job cannot start yet: which limit holds it back, why, and for how long at least."""

    limit: str
    reason: str
    retry_in: float

    def describe(self) -> str:
        """What ``naq job`` shows: ``limit user:42 (concurrency 1 reached)``."""
        return f"limit {self.limit} ({self.reason})"


def _slot_prefix(limit: ConcreteLimit) -> str:
    return f"slot.{limit.token}."


class Limiter:
    """Takes and gives back limits for one worker (``holder`` names it in the slots)."""

    def __init__(self, conn: Connection, holder: str) -> None:
        self._conn = conn
        self._holder = holder.encode()
        self._held: list[Permit] = []

    async def ready(self) -> None:
        """Make sure the state bucket exists."""
        await self._conn.ensure_bucket(c.LIMIT_STATE_BUCKET)

    async def acquire(self, limits: list[ConcreteLimit]) -> Permit | Denied:
        """Take every limit in ``limits`` for one job, or none of them."""
        permit = Permit()
        try:
            denied = await self._take_all(limits, permit)
        except BaseException:
            await self.release(permit)  # a slot taken before the failure must not linger
            raise
        if denied is not None:
            await self.release(permit)
            return denied
        if permit.slots:
            self._held.append(permit)
        return permit

    async def _take_all(self, limits: list[ConcreteLimit], permit: Permit) -> Denied | None:
        """Take the slots, then the rate tokens (a token taken cannot be given back, so
        only once every slot is held); the first limit that is full answers."""
        for limit in limits:
            concurrency = limit.spec.concurrency
            if concurrency is None:
                continue
            slot = await self._take_slot(limit, concurrency)
            if slot is None:
                return Denied(limit.key, f"concurrency {concurrency} reached", SLOT_RETRY)
            permit.slots.append(slot)
        for limit in limits:
            if limit.spec.rate is None:
                continue
            wait = await self._take_token(limit)
            if wait > 0:
                return Denied(limit.key, f"rate {limit.spec.rate}", wait)
        return None

    async def _take_slot(self, limit: ConcreteLimit, concurrency: int) -> Slot | None:
        prefix = _slot_prefix(limit)
        wanted = kv.subject_prefix(c.LIMIT_STATE_BUCKET) + prefix + "*"
        for _ in range(8):
            taken = await streams.subject_counts(self._conn, _STATE_STREAM, wanted)
            if len(taken) >= concurrency:
                return None
            used = {subject.rsplit(".", 1)[-1] for subject in taken}
            free = [n for n in range(min(concurrency, len(taken) + 8)) if str(n) not in used]
            key = prefix + str(random.choice(free))
            try:
                revision = await kv.put(
                    self._conn, c.LIMIT_STATE_BUCKET, key, self._holder, last=0, ttl=SLOT_LEASE
                )
            except WriteConflictError:
                continue  # another worker took that one a moment ago: look again
            return Slot(key, revision)
        return None

    async def _take_token(self, limit: ConcreteLimit) -> float:
        """Take one start from ``limit``'s rate; 0 if taken, else the seconds to wait."""
        rate = limit.spec.rate
        assert rate is not None
        interval = rate.per / rate.count
        tolerance = interval * (max(1, rate.count // 10) - 1)  # the burst allowed
        key = f"rate.{limit.token}"
        for _ in range(_RATE_ATTEMPTS):
            now = time.time()
            entry = await kv.get(self._conn, c.LIMIT_STATE_BUCKET, key)
            revision = entry.revision if entry is not None else 0
            try:
                due = float(entry.value) if entry is not None else now
            except ValueError:
                due = now
            due = max(due, now)
            if due - now > tolerance:
                return due - tolerance - now
            after = due + interval
            ttl = math.ceil(after - now) + 1  # gone once idle: the next start is free again
            try:
                await kv.put(
                    self._conn,
                    c.LIMIT_STATE_BUCKET,
                    key,
                    repr(after).encode(),
                    last=revision,
                    ttl=ttl,
                )
            except WriteConflictError:
                continue
            return 0.0
        return interval

    async def release(self, permit: Permit) -> None:
        """Give back the slots of ``permit`` (once; a slot that expired and was taken by
        another worker meanwhile is left to its new holder)."""
        if permit.released:
            return
        permit.released = True
        if permit in self._held:
            self._held.remove(permit)
        subjects = [
            kv.subject(c.LIMIT_STATE_BUCKET, slot.key) for slot in permit.slots if not slot.lost
        ]
        results = await asyncio.gather(
            *(streams.purge(self._conn, _STATE_STREAM, subject) for subject in subjects),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.debug("a slot was not given back (it expires by itself): {}", result)

    async def renew(self) -> None:
        """Renew every slot this worker holds (every :data:`RENEW_EVERY` seconds)."""
        for permit in list(self._held):
            for slot in permit.slots:
                if slot.lost or permit.released:
                    continue
                try:
                    slot.revision = await kv.put(
                        self._conn,
                        c.LIMIT_STATE_BUCKET,
                        slot.key,
                        self._holder,
                        last=slot.revision,
                        ttl=SLOT_LEASE,
                    )
                except WriteConflictError:
                    slot.lost = True
                    logger.warning(
                        "concurrency slot {} expired before it was renewed (was NATS away?)",
                        slot.key,
                    )

    async def keep_renewing(self, stopped: Callable[[], bool]) -> None:
        """Renew the slots held, every :data:`RENEW_EVERY` seconds, until ``stopped()``."""
        while not stopped():
            await asyncio.sleep(RENEW_EVERY)
            if self._held:
                try:
                    await self.renew()
                except Exception as exc:  # noqa: BLE001 - tried again at the next round
                    logger.warning("renewing concurrency slots failed: {}", exc)
