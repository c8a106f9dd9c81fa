"""The jobs a worker finished, counted per queue and added to the queues' shared totals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .. import stats
from ..transport import Connection


@dataclass(slots=True)
class Counters:
    """Jobs a worker finished: completed, and failed or dead; in all and per queue.

    The per-queue counts are added to the queues' shared totals (:mod:`naq.stats`) by
    :meth:`flush`, called at every heartbeat and once more at shutdown; ``flushed`` holds
    what was added already, so each flush adds only what finished since the last one."""

    done: int = 0
    failed: int = 0
    done_by_queue: dict[str, int] = field(default_factory=dict)
    failed_by_queue: dict[str, int] = field(default_factory=dict)
    #: per queue, the (done, failed) counts already added to the shared totals
    flushed: dict[str, tuple[int, int]] = field(default_factory=dict)
    _flushing: asyncio.Future[None] | None = None

    def add_done(self, queue: str) -> None:
        """Count a completed job of ``queue``."""
        self.done += 1
        self.done_by_queue[queue] = self.done_by_queue.get(queue, 0) + 1

    def add_failed(self, queue: str) -> None:
        """Count a job of ``queue`` that failed for good or was dead-lettered."""
        self.failed += 1
        self.failed_by_queue[queue] = self.failed_by_queue.get(queue, 0) + 1

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
        """Add what finished since the last flush to the shared per-queue totals (one
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

    async def _add_unflushed(self, conn: Connection) -> None:
        for queue, (done, failed) in self.unflushed().items():
            await stats.add(conn, queue, done, failed)
            added_done, added_failed = self.flushed.get(queue, (0, 0))
            self.flushed[queue] = (added_done + done, added_failed + failed)
