"""The ``naq list-workers`` table, fitted to the terminal's width.

Worker ids and queue names are never cut (they are what a user copies, so they stay on one
line when at all possible): when the terminal is too narrow for every column, the least
important columns are left out; if even the essential ones do not fit, ids fold onto more
lines. Other cells never wrap, so no header is squashed to ``work…``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from ..job import WorkerInfo
from .times import age_text

#: Wide enough that measuring a table never clamps it to the width it is measured with.
_UNBOUNDED_WIDTH = 1_000_000


@dataclass(frozen=True, slots=True)
class WorkerColumn:
    """One column: its header, how a worker's cell reads, and whether it holds ids."""

    header: str
    cell: Callable[[WorkerInfo, datetime], str]
    #: Text a user copies: folded onto more lines when narrow, never cut.
    holds_ids: bool = False


#: Every column, in display order.
COLUMNS = (
    WorkerColumn("worker id", lambda w, _: w.worker_id, holds_ids=True),
    WorkerColumn("host", lambda w, _: w.hostname),
    WorkerColumn("pid", lambda w, _: str(w.pid)),
    WorkerColumn("queues", lambda w, _: ",".join(w.queues), holds_ids=True),
    WorkerColumn("conc.", lambda w, _: str(w.concurrency)),
    WorkerColumn("running", lambda w, _: str(len(w.running_jobs))),
    WorkerColumn("done", lambda w, _: str(w.jobs_done)),
    WorkerColumn("failed", lambda w, _: str(w.jobs_failed)),
    WorkerColumn("heartbeat", lambda w, now: age_text(w.last_heartbeat, now)),
    WorkerColumn("status", lambda w, _: w.status),
)

#: Headers of the columns left out when the terminal is narrow, the first one first. The
#: columns not named here (worker id, queues, status) are always shown.
DROP_ORDER = ("conc.", "failed", "done", "pid", "host", "running", "heartbeat")


def _table(workers: Sequence[WorkerInfo], columns: Sequence[WorkerColumn], now: datetime) -> Table:
    table = Table(title="workers")
    for column in columns:
        if column.holds_ids:
            table.add_column(column.header, overflow="fold")
        else:
            table.add_column(column.header, no_wrap=True)
    for worker in workers:
        table.add_row(*(column.cell(worker, now) for column in columns))
    return table


def _fits(console: Console, table: Table) -> bool:
    """Whether ``table`` fits ``console``'s width without any cell wrapping."""
    options = console.options.update_width(_UNBOUNDED_WIDTH)
    return Measurement.get(console, options, table).maximum <= console.width


def workers_table(
    workers: Sequence[WorkerInfo], console: Console, now: datetime | None = None
) -> Table:
    """A table of ``workers`` with as many columns as fit ``console``'s width."""
    now = now or datetime.now(UTC)
    shown = list(COLUMNS)
    for header in DROP_ORDER:
        if _fits(console, _table(workers, shown, now)):
            break
        shown = [column for column in shown if column.header != header]
    return _table(workers, shown, now)
