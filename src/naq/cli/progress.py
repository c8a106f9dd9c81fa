"""Progress bars of long commands (``naq purge``, ``naq dlq requeue``) on stderr: done/total,
rate and time left, driven by the work's ``on_progress(done, total)`` calls.

Bars are drawn only when stderr really is a terminal (``FORCE_COLOR`` does not make a pipe
one) and never for a command given ``--json``: scripts reading the output see none of them.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..work_progress import OnProgress
from .common import err_console

#: Least time between two redraws asked of rich (the last call of a task always redraws).
_MIN_INTERVAL = 0.05


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (checked on the file itself, not rich's guess)."""
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # replaced or closed stderr
        return False


class _RateColumn(ProgressColumn):
    """Items done per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/s" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class ProgressBars:
    """Bars on stderr, one per :meth:`track`-ed piece of work, while the ``with`` block runs;
    when ``show`` is false (or stderr is no terminal) nothing is drawn and :meth:`track`
    returns ``None``, the "no callback" of the work functions."""

    def __init__(self, *, show: bool) -> None:
        self._progress: Progress | None = None
        if show and stderr_is_terminal():
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=err_console,
            )

    def __enter__(self) -> ProgressBars:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def track(self, description: str) -> OnProgress | None:
        """A new bar named ``description`` and the ``on_progress(done, total)`` that moves
        it; ``None`` when bars are not shown."""
        progress = self._progress
        if progress is None:
            return None
        task = progress.add_task(description, total=None)
        return _Mover(progress, task)


class _Mover:
    """Moves one bar: forwards ``(done, total)`` to rich at most every ``_MIN_INTERVAL``
    seconds, and always when the work is complete."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < _MIN_INTERVAL:
            return
        self._last = now
        self._progress.update(self._task, completed=done, total=total)
