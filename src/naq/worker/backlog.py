"""Deliveries a worker holds but has no free slot for yet, highest priority first (and in
arrival order within a priority)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .. import constants as c
from .delivery import Delivery


class Backlog:
    """One first-in first-out line per priority; :meth:`popleft` serves the highest."""

    def __init__(self) -> None:
        self._lines: list[deque[Delivery]] = [deque() for _ in range(max(c.PRIORITY_LEVELS) + 1)]
        self._size = 0

    def append(self, delivery: Delivery) -> None:
        """Queue ``delivery`` behind the others of its priority."""
        self._lines[delivery.priority].append(delivery)
        self._size += 1

    def popleft(self) -> Delivery:
        """The next delivery to start: the oldest of the highest priority waiting."""
        for line in reversed(self._lines):
            if line:
                self._size -= 1
                return line.popleft()
        raise IndexError("pop from an empty backlog")

    def clear(self) -> None:
        """Forget every delivery."""
        for line in self._lines:
            line.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[Delivery]:
        for line in reversed(self._lines):
            yield from line
