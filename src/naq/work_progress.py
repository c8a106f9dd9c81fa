"""How far a long operation (a purge, a bulk requeue) has got, reported to the caller's
callback as the work is done. No display code lives here: ``naq``'s progress bar is drawn
from these calls by the CLI.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``on_progress(done, total)``: called each time more of the work is done. ``total`` is
#: what the operation expected when it started and may change while it runs (e.g. jobs taken
#: by a worker meanwhile); ``done`` never goes back and never exceeds the ``total`` of the
#: same call, and the last call has ``done == total``.
OnProgress = Callable[[int, int], None]


class Tally:
    """Counts the work done and reports it to an optional :data:`OnProgress` callback."""

    def __init__(self, on_progress: OnProgress | None, total: int) -> None:
        self._on_progress = on_progress
        self.total = max(0, total)
        self.done = 0
        self._report()

    def reach(self, done: int) -> None:
        """Report ``done`` items done (a smaller number than already reported is ignored)."""
        if done > self.done:
            self.done = done
            self._report()

    def advance(self, count: int = 1) -> None:
        """Report ``count`` more items done."""
        self.reach(self.done + count)

    def finish(self) -> None:
        """The work is over: report it complete (the total becomes what was done)."""
        self.total = self.done
        self._report()

    def _report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.done, max(self.total, self.done))
