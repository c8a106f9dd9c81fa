"""The leader's in-memory view of the schedules: records by id plus a heap of
``(next_run, schedule_id, revision)``. Built once at election, then kept current by a KV
watch and by the leader's own writes; a tick pops only the entries that are due."""

from __future__ import annotations

import heapq

from .models import ScheduleRecord, ScheduleStatus

_ACTIVE = ScheduleStatus.ACTIVE.value


class Timeline:
    """Known schedules ordered by next run time (a heap with lazy deletion)."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[ScheduleRecord, int]] = {}
        self._heap: list[tuple[float, str, int]] = []
        #: schedule id -> (run time, the run time after it), computed ahead of need
        self.successors: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def apply(self, record: ScheduleRecord, revision: int) -> bool:
        """Take a newer revision of a schedule; False if it is not newer than what we have."""
        sid = record.schedule_id
        known = self.records.get(sid)
        if known is not None and known[1] >= revision:
            return False
        self.records[sid] = (record, revision)
        if record.status == _ACTIVE and record.next_run is not None:
            heapq.heappush(self._heap, (record.next_run, sid, revision))
        else:
            self.successors.pop(sid, None)
        self._compact()
        return True

    def remove(self, schedule_id: str, revision: int) -> None:
        """Forget a deleted schedule (unless we already know a newer revision)."""
        known = self.records.get(schedule_id)
        if known is not None and known[1] < revision:
            del self.records[schedule_id]
            self.successors.pop(schedule_id, None)

    def _valid(self, entry: tuple[float, str, int]) -> bool:
        known = self.records.get(entry[1])
        return known is not None and known[1] == entry[2] and known[0].status == _ACTIVE

    def next_due(self) -> float | None:
        """The earliest next run time, or ``None`` when nothing is scheduled."""
        heap = self._heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[tuple[ScheduleRecord, int]]:
        """Remove and return every schedule due at ``now``, soonest first."""
        heap = self._heap
        due: list[tuple[ScheduleRecord, int]] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._valid(entry):
                due.append(self.records[entry[1]])
        return due

    def retry_at(self, schedule_id: str, at: float) -> None:
        """Look at ``schedule_id`` again at ``at`` (after a failed attempt to fire it)."""
        known = self.records.get(schedule_id)
        if known is not None:
            heapq.heappush(self._heap, (at, schedule_id, known[1]))

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self.records) + 1024:
            self._heap = [e for e in self._heap if self._valid(e)]
            heapq.heapify(self._heap)
