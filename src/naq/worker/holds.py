"""Jobs a worker handed back to wait in NATS (``nak`` with a delay), counted until they are
due again: those waiting for their next attempt (``retrying``) and those waiting for a
shared limit (``limited``). The server counts both as delivered and unacknowledged, like a
running job; the worker reports these counts at each heartbeat so ``list_queues`` can tell
them apart."""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field

RETRYING = "retrying"
LIMITED = "limited"


@dataclass(slots=True)
class HeldBack:
    """Counts per ``(queue, kind)`` of jobs handed back until a given time."""

    _due: list[tuple[float, str, str]] = field(default_factory=list)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, queue: str, kind: str, delay: float) -> None:
        """A job of ``queue`` was handed back for ``delay`` seconds because of ``kind``."""
        key = (queue, kind)
        heapq.heappush(self._due, (time.time() + delay, queue, kind))
        self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self, kind: str) -> dict[str, int]:
        """Per queue, the jobs handed back because of ``kind`` that are not due yet."""
        now = time.time()
        while self._due and self._due[0][0] <= now:
            _, queue, done_kind = heapq.heappop(self._due)
            key = (queue, done_kind)
            left = self._counts[key] - 1
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]
        return {queue: n for (queue, k), n in self._counts.items() if k == kind}
