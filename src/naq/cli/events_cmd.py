"""``naq events``: the recent events of the events stream, and with ``--follow`` each new
one as it happens."""

from __future__ import annotations

import json
import sys

import typer
from rich.markup import escape

from ..events import Event, read_events
from ..transport import Connection
from .common import JSON_OPTION, URL_OPTION, console, handle_errors, run, with_connection
from .common import json_ready as plain
from .times import duration_text

#: Colours of the kinds in the terminal view.
_STYLES = {
    "completed": "green",
    "failed": "red",
    "dead": "bold red",
    "retrying": "yellow",
    "cancelled": "magenta",
    "started": "cyan",
}


def event_line(event: Event) -> str:
    """One event as one line of rich markup: time, queue, kind, job, details."""
    style = _STYLES.get(event.kind, "")
    kind = f"[{style}]{event.kind}[/]" if style else event.kind
    parts = [event.at.strftime("%H:%M:%S.%f")[:-3], escape(event.queue), kind]
    if event.job_id:
        parts.append(event.job_id)
    if event.function:
        parts.append(escape(event.function))
    if event.attempt and event.attempt > 1:
        parts.append(f"attempt {event.attempt}")
    if event.duration is not None:
        parts.append(duration_text(event.duration))
    if event.progress is not None:
        parts.append(f"{event.progress:.0%}")
    if event.message:
        parts.append(escape(event.message))
    if event.retry_in is not None:
        parts.append(f"again in {event.retry_in:g}s")
    if event.worker_id and not event.job_id:
        parts.append(event.worker_id)
    if event.error:
        parts.append(f"[red]{escape(event.error)}[/]")
    return "  ".join(parts)


def register(app: typer.Typer) -> None:
    """Add ``naq events`` to ``app``."""

    @app.command()
    @handle_errors
    def events(
        queue: str = typer.Option(None, "--queue", "-q", help="Only this queue's events."),
        kind: list[str] = typer.Option(
            None, "--kind", "-k", help="Only these kinds (repeatable): started, failed, ..."
        ),
        follow: bool = typer.Option(
            False, "--follow", "-f", help="Keep printing new events until Ctrl-C."
        ),
        last: int = typer.Option(
            20, "--last", "-n", min=0, help="Start with about this many recent events."
        ),
        url: str = URL_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Print recent job and worker events (published where NAQ_EVENTS=1), oldest first;
        --json prints one JSON object per line."""

        async def body(conn: Connection) -> int:
            count = 0
            async for event in read_events(
                conn, queue=queue, kinds=kind or None, last=last, follow=follow
            ):
                count += 1
                if as_json:
                    sys.stdout.write(json.dumps(plain(event)) + "\n")
                    sys.stdout.flush()
                else:
                    console.print(event_line(event), highlight=False, soft_wrap=True)
            return count

        try:
            count = run(with_connection(url, body))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        if not count and not as_json and not follow:
            console.print(
                "no events; workers and producers publish them with NAQ_EVENTS=1 "
                "(or naq worker --events)",
                highlight=False,
            )
