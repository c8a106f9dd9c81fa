"""The ``naq queues`` table, fitted to the terminal's width.

No outer border and one space between columns. When the terminal is too narrow for every
column, the least important ones are left out and the caption names them; the queue name
is never cut (it is what a user copies: it folds onto more lines if even the essential
columns do not fit). Counts are right-aligned and never wrap."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from ..info import QueueInfo
from .fitting import Column, fitted_table, left_out_caption


def _count(header: str, count: Callable[[QueueInfo], int]) -> Column[QueueInfo]:
    return Column(header, lambda q: str(count(q)), justify="right")


#: Every column, in display order.
COLUMNS: tuple[Column[QueueInfo], ...] = (
    Column("queue", lambda q: q.name, holds_ids=True),
    _count("waiting", lambda q: q.waiting),
    _count("running", lambda q: q.running),
    _count("retrying", lambda q: q.retrying),
    _count("scheduled", lambda q: q.scheduled),
    _count("deferred", lambda q: q.deferred),
    _count("completed", lambda q: q.completed),
    _count("failed", lambda q: q.failed),
    _count("dead", lambda q: q.dead),
    _count("done/min", lambda q: q.completed_last_minute),
    _count("fail/min", lambda q: q.failed_last_minute),
    _count("workers", lambda q: q.workers),
    _count("consumers", lambda q: q.consumers),
    Column("paused", lambda q: "yes" if q.paused else "no", justify="right"),
)

#: Headers of the columns left out when the terminal is narrow, the first one first. The
#: columns not named here (queue, waiting) are always shown.
DROP_ORDER = (
    "consumers",
    "workers",
    "completed",
    "scheduled",
    "retrying",
    "deferred",
    "failed",
    "fail/min",
    "done/min",
    "dead",
    "running",
    "paused",
)


def _new_table() -> Table:
    return Table(title="queues", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))


def queues_table(queues: Sequence[QueueInfo], console: Console) -> Table:
    """A table of ``queues`` with as many columns as fit ``console``'s width: waiting,
    running, retrying, scheduled, deferred, completed, failed and dead jobs, jobs completed and
    failed per minute (the last one), workers, consumers, paused."""
    fitted = fitted_table(console, _new_table, COLUMNS, queues, DROP_ORDER)
    captions = [left_out_caption(fitted.left_out)]
    split = [_by_priority(queue) for queue in queues if set(queue.waiting_by_priority) - {0}]
    if split:
        captions.append("waiting by priority: " + "; ".join(split))
    fitted.table.caption = "\n".join(text for text in captions if text) or None
    return fitted.table


def _by_priority(queue: QueueInfo) -> str:
    """``emails 9:2 0:7``: a queue's waiting jobs per priority, highest first."""
    counts = sorted(queue.waiting_by_priority.items(), reverse=True)
    return queue.name + " " + " ".join(f"{p}:{n}" for p, n in counts)
