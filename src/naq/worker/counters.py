"""The jobs a worker finished, counted per queue and added to the queues' shared counts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .. import stats
from ..transport import Connection


@dataclass(frozen=True, slots=True)
class _Unflushed:
    """What one queue's next compare-and-set adds: totals, and the same jobs per slot."""

    queue: str
    done: int
    failed: int
    slots: dict[int, tuple[int, int]]


@dataclass(slots=True)
class Counters:
    """Jobs a worker finished: completed, and failed or dead; in all and per queue.

    The per-queue counts are added to the queues' shared counts (:mod:`naq.stats`) by
    :meth:`flush`, called at every heartbeat and once more at shutdown; ``flushed`` holds
    what was added already, so each flush adds only what finished since the last one.
    ``recent`` holds, per queue and :func:`~naq.stats.slot_of` slot, the jobs not added
    yet, so the queues' last-minute counts ride on the same write."""

    done: int = 0
    failed: int = 0
    done_by_queue: dict[str, int] = field(default_factory=dict)
    failed_by_queue: dict[str, int] = field(default_factory=dict)
    #: per queue, the (done, failed) counts already added to the shared totals
    flushed: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: per queue and slot, the [done, failed] jobs not yet added to the shared counts
    recent: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    _flushing: asyncio.Future[None] | None = None

    def add_done(self, queue: str) -> None:
        """Count a completed job of ``queue``."""
        self.done += 1
        self.done_by_queue[queue] = self.done_by_queue.get(queue, 0) + 1
        self._slot(queue)[0] += 1

    def add_failed(self, queue: str) -> None:
        """Count a job of ``queue`` that failed for good or was dead-lettered."""
        self.failed += 1
        self.failed_by_queue[queue] = self.failed_by_queue.get(queue, 0) + 1
        self._slot(queue)[1] += 1

    def _slot(self, queue: str) -> list[int]:
        slots = self.recent.setdefault(queue, {})
        return slots.setdefault(stats.slot_of(time.time()), [0, 0])

    def unflushed(self) -> dict[str, tuple[int, int]]:
        """Per queue, the (done, failed) jobs not yet added to the shared totals."""
        deltas: dict[str, tuple[int, int]] = {}
        for queue in self.done_by_queue.keys() | self.failed_by_queue.keys():
            done, failed = self.flushed.get(queue, (0, 0))
            delta = (
                self.done_by_queue.get(queue, 0) - done,
                self.failed_by_queue.get(queue, 0) - failed,
            )
            if delta != (0, 0):
                deltas[queue] = delta
        return deltas

    async def flush(self, conn: Connection) -> None:
        """Add what finished since the last flush to the shared per-queue counts (one
        compare-and-set per queue); on failure it stays for the next flush.

        A flush runs to its end even if its caller is cancelled (a write that got through
        must be marked as added, or the next flush would add it twice), and flushes never
        overlap: a flush waits for the one still running first."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.wait([self._flushing])
        if not self.unflushed():
            return
        self._flushing = asyncio.ensure_future(self._add_unflushed(conn))
        await asyncio.shield(self._flushing)

    def _take_stock(self) -> list[_Unflushed]:
        """What each queue's flush adds, read at one moment (jobs that finish while the
        flush runs are left for the next one)."""
        oldest = stats.slot_of(time.time()) - stats.KEPT_SLOTS + 1
        stock: list[_Unflushed] = []
        for queue, (done, failed) in self.unflushed().items():
            slots = self.recent.get(queue, {})
            for slot in [s for s in slots if s < oldest]:
                del slots[slot]  # too old to count in any last minute: forgotten
            kept = {s: (n[0], n[1]) for s, n in slots.items()}
            stock.append(_Unflushed(queue, done, failed, kept))
        return stock

    def _added(self, item: _Unflushed) -> None:
        added_done, added_failed = self.flushed.get(item.queue, (0, 0))
        self.flushed[item.queue] = (added_done + item.done, added_failed + item.failed)
        slots = self.recent.get(item.queue, {})
        for slot, (done, failed) in item.slots.items():
            left = slots.get(slot)
            if left is None:
                continue
            left[0] -= done
            left[1] -= failed
            if left == [0, 0]:
                del slots[slot]

    async def _add_unflushed(self, conn: Connection) -> None:
        for item in self._take_stock():
            await stats.add(conn, item.queue, item.done, item.failed, recent=item.slots)
            self._added(item)
