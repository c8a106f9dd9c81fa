"""Many calls after one fixed delay, on one timer.

The worker writes a ``running`` record only for jobs still running a moment after they
started. A loop timer per job (``call_later`` + ``cancel``) costs more than the no-op jobs
themselves; since every call has the same delay, the due times arrive in order and a deque
with a single pending timer does the same job.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from loguru import logger


class DelayedCall:
    """A call :class:`DelayedCalls` will make unless :meth:`cancel` comes first."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        """Do not make the call (a no-op once it was made)."""
        self.callback = None


class DelayedCalls:
    """Runs each added callback ``delay`` seconds after it was added, unless cancelled."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._due: deque[tuple[float, DelayedCall]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, callback: Callable[[], None]) -> DelayedCall:
        """Call ``callback`` after the delay (on the running loop); returns a handle."""
        loop = asyncio.get_running_loop()
        call = DelayedCall(callback)
        self._due.append((loop.time() + self.delay, call))
        if self._timer is None:
            self._timer = loop.call_later(self.delay, self._fire)
        return call

    def _fire(self) -> None:
        self._timer = None
        due = self._due
        loop = asyncio.get_running_loop()
        now = loop.time()
        while due and due[0][0] <= now:
            call = due.popleft()[1]
            callback, call.callback = call.callback, None
            if callback is not None:
                try:
                    callback()
                except Exception:  # noqa: BLE001 - the other calls still have to run
                    logger.exception("delayed call failed")
        # drop cancelled calls at the front, so an idle worker's timer stops
        while due and due[0][1].callback is None:
            due.popleft()
        if self._timer is not None:  # a callback added a call (and a timer): one is enough
            self._timer.cancel()
            self._timer = None
        if due:
            self._timer = loop.call_at(due[0][0], self._fire)

    def close(self) -> None:
        """Cancel everything still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, call in self._due:
            call.cancel()
        self._due.clear()
