"""What ``naq job ID`` shows of a job's attempts: one row each (number, worker, start,
duration, error) and, with ``--traceback``, each attempt's traceback.

The worker id and the error fold onto more lines when narrow; they are never cut."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich import box
from rich.table import Table

from ..info import AttemptInfo
from .times import duration_text

#: What stands in for the traceback of an earlier attempt (a worker keeps the latest only).
NOT_KEPT = "(not kept: a record keeps the tracebacks of the last 5 attempts)"
#: What stands in for the latest attempt's traceback when there is none (e.g. a job that
#: was refused never ran, so nothing raised).
NONE_STORED = "(none stored)"


def _started_text(moment: datetime | None) -> str:
    """``MM-DD HH:MM:SS`` in UTC (the job's own rows above give the full dates)."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%m-%d %H:%M:%S")


def _error_text(attempt: AttemptInfo) -> str:
    if attempt.error_type is None and attempt.error is None:
        return "-"
    if attempt.error_type is None:
        return attempt.error or "-"
    return f"{attempt.error_type}: {attempt.error}" if attempt.error else attempt.error_type


def attempts_table(attempts: Sequence[AttemptInfo]) -> Table:
    """One row per attempt: number, worker, start (UTC), duration and error."""
    table = Table(title="attempts", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("worker", overflow="fold")
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", ratio=1)
    for attempt in attempts:
        took = attempt.duration
        table.add_row(
            str(attempt.attempt),
            attempt.worker_id or "-",
            _started_text(attempt.started_at),
            "-" if took is None else duration_text(took),
            _error_text(attempt),
        )
    return table


def traceback_texts(attempts: Sequence[AttemptInfo]) -> list[str]:
    """For each attempt that failed: a heading and its traceback (or why there is none);
    one line saying so if no attempt failed."""
    failed = [a for a in attempts if a.error_type is not None or a.error is not None]
    if not failed:
        return ["no attempt failed: no traceback"]
    latest = max(a.attempt for a in attempts)
    texts: list[str] = []
    for attempt in failed:
        missing = NONE_STORED if attempt.attempt == latest else NOT_KEPT
        body = (attempt.traceback or missing).rstrip("\n")
        texts.append(f"attempt {attempt.attempt} traceback:\n{body}")
    return texts
