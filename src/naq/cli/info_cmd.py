"""``naq info [--interval S] [--json]``: queues and workers in one view.

Without ``--interval`` it prints once. With it, the view is redrawn in place every S
seconds (on a terminal; to a pipe each refresh is printed after the last) until Ctrl-C,
which ends it with exit code 0. ``--json`` prints ``{"queues": [...], "workers": [...]}``
with the field names of ``naq queues --json`` and ``naq list-workers --json``; with
``--interval``, one such object per line and refresh. JSON never has colour."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from .. import admin
from ..info import QueueInfo, WorkerInfo
from ..transport import Connection
from .common import JSON_OPTION, URL_OPTION, console, fail, handle_errors, print_json, run
from .common import with_connection as _with
from .queues_table import queues_table
from .times import when_text
from .workers_table import workers_table

#: The shortest refresh interval accepted, seconds (each refresh reads every queue).
MIN_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The queues and workers as read at one moment."""

    queues: list[QueueInfo]
    workers: list[WorkerInfo]
    taken_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """``{"queues": [...], "workers": [...]}`` with the listings' own field names."""
        return {
            "queues": [dataclasses.asdict(q) for q in self.queues],
            "workers": [dataclasses.asdict(w) for w in self.workers],
        }


def _iso(value: object) -> str:
    """How :func:`json.dumps` writes the times of a snapshot: ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


async def read_snapshot(conn: Connection) -> Snapshot:
    """Read the workers, then the queues (counting those workers)."""
    workers = await admin.list_workers(conn)
    queues = await admin.list_queues(conn, workers)
    return Snapshot(queues, workers, datetime.now(UTC))


def render(snapshot: Snapshot, footer: str | None = None) -> RenderableType:
    """The two tables (fitted to the console's width), and a line saying when they were
    read (and ``footer``, if given)."""
    parts: list[RenderableType] = []
    if snapshot.queues:
        parts.append(queues_table(snapshot.queues, console))
    else:
        parts.append(Text("no queues yet"))
    parts.append(Text(""))
    if snapshot.workers:
        parts.append(workers_table(snapshot.workers, console, now=snapshot.taken_at))
    else:
        parts.append(Text("no workers running"))
    line = f"as of {when_text(snapshot.taken_at)}"
    parts.append(Text(line + (f"; {footer}" if footer else ""), style="dim"))
    return Group(*parts)


def _print_json_line(snapshot: Snapshot) -> None:
    sys.stdout.write(json.dumps(snapshot.as_dict(), separators=(",", ":"), default=_iso) + "\n")
    sys.stdout.flush()


async def _refresh_json(conn: Connection, interval: float) -> None:
    while True:
        _print_json_line(await read_snapshot(conn))
        await asyncio.sleep(interval)


async def _refresh_view(conn: Connection, interval: float) -> None:
    footer = f"every {interval:g} s, Ctrl-C to stop"
    if not console.is_terminal:  # a pipe or a file: one view after the other
        while True:
            console.print(render(await read_snapshot(conn), footer))
            console.print()
            console.file.flush()
            await asyncio.sleep(interval)
    first = render(await read_snapshot(conn), footer)
    with Live(first, console=console, auto_refresh=False, transient=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(render(await read_snapshot(conn), footer), refresh=True)


def _check_interval(interval: float | None) -> None:
    if interval is not None and not interval >= MIN_INTERVAL:  # (NaN too)
        raise fail(f"--interval must be at least {MIN_INTERVAL:g} seconds, got {interval!r}")


def register(app: typer.Typer) -> None:
    """Add ``naq info`` to ``app``."""

    @app.command()
    @handle_errors
    def info(
        interval: float = typer.Option(
            None,
            "-i",
            "--interval",
            help="Refresh every S seconds until Ctrl-C (default: print once).",
            metavar="S",
        ),
        url: str = URL_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Show queues and workers together; with --interval, a live view (like rq info -i)."""
        _check_interval(interval)
        if interval is None:
            snapshot = run(_with(url, read_snapshot))
            if as_json:
                print_json(snapshot.as_dict())
            else:
                console.print(render(snapshot))
            return
        refresh = _refresh_json if as_json else _refresh_view
        try:
            run(_with(url, lambda conn: refresh(conn, interval)))
        except KeyboardInterrupt:
            return  # Ctrl-C is how a live view ends
