"""The ``naq queues`` table: every count of every queue, readable in 80 columns.

No outer border and one space between columns, so the nine columns fit 80 characters with
a queue name of up to 17; a longer name folds onto more lines (it is never cut, it is what
a user copies). Counts are right-aligned and never wrap."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.table import Table

from ..job import QueueInfo

#: Count columns after the queue name: header, and how a queue's cell reads.
COUNT_COLUMNS: tuple[tuple[str, Callable[[QueueInfo], str]], ...] = (
    ("waiting", lambda q: str(q.waiting)),
    ("running", lambda q: str(q.running)),
    ("scheduled", lambda q: str(q.scheduled)),
    ("completed", lambda q: str(q.completed)),
    ("failed", lambda q: str(q.failed)),
    ("dead", lambda q: str(q.dead)),
    ("workers", lambda q: str(q.workers)),
    ("paused", lambda q: "yes" if q.paused else "no"),
)


def queues_table(queues: Sequence[QueueInfo]) -> Table:
    """A table of ``queues``: name, waiting, running, scheduled, completed, failed, dead,
    workers and paused."""
    table = Table(title="queues", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0))
    table.add_column("queue", overflow="fold", min_width=5)
    for header, _ in COUNT_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for queue in queues:
        table.add_row(queue.name, *(cell(queue) for _, cell in COUNT_COLUMNS))
    split = [_by_priority(queue) for queue in queues if set(queue.waiting_by_priority) - {0}]
    if split:
        # under the table, not a column: the nine columns already fill 80 characters
        table.caption = "waiting by priority: " + "; ".join(split)
    return table


def _by_priority(queue: QueueInfo) -> str:
    """``emails 9:2 0:7``: a queue's waiting jobs per priority, highest first."""
    counts = sorted(queue.waiting_by_priority.items(), reverse=True)
    return queue.name + " " + " ".join(f"{p}:{n}" for p, n in counts)
