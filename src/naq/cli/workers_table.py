"""The ``naq list-workers`` table, fitted to the terminal's width.

No outer border and one space between columns (as ``naq queues``), so an 80-column
terminal holds most columns. Worker ids and queue names are never cut (they are what a
user copies, so they stay on one line when at all possible): when the terminal is too
narrow for every column, the least important ones are left out and the caption names
them; if even the essential ones do not fit, ids fold onto more lines. Other cells never
wrap. The status column says what each live worker is doing in the original naq's words
(``busy``, ``idle``, ``stopping``: :attr:`naq.WorkerInfo.state`; ``--json`` has naq's own
``status`` beside it), and the caption counts them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich import box
from rich.console import Console
from rich.table import Table

from ..info import WORKER_BUSY, WORKER_IDLE, WORKER_STOPPING, WorkerInfo
from .fitting import Column, fitted_table, left_out_caption
from .times import age_text, duration_text


def columns(now: datetime) -> list[Column[WorkerInfo]]:
    """Every column, in display order (``now``: what the heartbeat's age counts to)."""
    return [
        Column("worker id", lambda w: w.worker_id, holds_ids=True),
        Column("host", lambda w: w.hostname),
        Column("pid", lambda w: str(w.pid), justify="right"),
        Column("queues", lambda w: ",".join(w.queues), holds_ids=True),
        Column("conc.", lambda w: str(w.concurrency), justify="right"),
        Column("running", lambda w: str(len(w.running_jobs)), justify="right"),
        Column("done", lambda w: str(w.jobs_done), justify="right"),
        Column("failed", lambda w: str(w.jobs_failed), justify="right"),
        Column("up", lambda w: duration_text(w.uptime), justify="right"),
        Column("heartbeat", lambda w: age_text(w.last_heartbeat, now)),
        # a live worker is running; what it is doing, in the original naq's words
        Column("status", lambda w: w.state),
    ]


#: Headers of the columns left out when the terminal is narrow, the first one first. The
#: columns not named here (worker id, queues, status) are always shown.
DROP_ORDER = ("conc.", "failed", "done", "pid", "host", "up", "running", "heartbeat")


def workers_table(
    workers: Sequence[WorkerInfo], console: Console, now: datetime | None = None
) -> Table:
    """A table of ``workers`` with as many columns as fit ``console``'s width."""
    fitted = fitted_table(
        console,
        lambda: Table(title="workers", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0)),
        columns(now or datetime.now(UTC)),
        workers,
        DROP_ORDER,
    )
    left_out = left_out_caption(fitted.left_out)
    fitted.table.caption = states_caption(workers) + (f" · {left_out}" if left_out else "")
    return fitted.table


def states_caption(workers: Sequence[WorkerInfo]) -> str:
    """How many workers are busy and idle (and stopping, if any): ``2 busy, 1 idle``."""
    states = [w.state for w in workers]
    parts = [f"{states.count(WORKER_BUSY)} busy", f"{states.count(WORKER_IDLE)} idle"]
    if WORKER_STOPPING in states:
        parts.append(f"{states.count(WORKER_STOPPING)} stopping")
    return ", ".join(parts)
