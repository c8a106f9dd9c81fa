"""``naq dlq list|show|requeue|purge``: inspect and act on the dead-letter stream."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from .. import deadletter
from ..deadletter import DeadLetter
from ..transport import Connection
from .common import JSON_OPTION, URL_OPTION, console, fail, handle_errors, print_json, run
from .common import with_connection as _with
from .times import when_text

dlq_app = typer.Typer(help="Dead letters: jobs that failed for good or never ran properly.")

QUEUE_OPTION = typer.Option(None, "--queue", "-q", help="Only this queue.")


@dlq_app.command("list")
@handle_errors
def list_cmd(
    queue: str = QUEUE_OPTION,
    limit: int = typer.Option(100, "--limit", help="At most this many entries."),
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List dead letters, oldest first (times in UTC)."""

    async def body(conn: Connection) -> list[DeadLetter]:
        return await deadletter.list_dead_letters(conn, queue, limit)

    entries = run(_with(url, body))
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    if not entries:
        console.print("no dead letters")
        return
    table = Table(title="dead letters")
    table.add_column("id", no_wrap=True)
    table.add_column("queue", overflow="fold")  # ids a user copies: folded, never cut
    table.add_column("job id", overflow="fold")
    table.add_column("kind", no_wrap=True)
    table.add_column("failed at")
    table.add_column("reason")
    for e in entries:
        table.add_row(
            str(e.id), e.queue, e.job_id or "-", e.kind, when_text(e.failed_at), e.reason[:80]
        )
    console.print(table)


@dlq_app.command("show")
@handle_errors
def show_cmd(entry_id: int, url: str = URL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Show one dead letter with its raw payload."""

    async def body(conn: Connection) -> DeadLetter:
        return await deadletter.get_dead_letter(conn, entry_id)

    entry = run(_with(url, body))
    data = entry.to_json()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)


@dlq_app.command("requeue")
@handle_errors
def requeue_cmd(entry_ids: list[int], url: str = URL_OPTION) -> None:
    """Publish the original jobs again (same job ids) and remove the entries."""

    async def body(conn: Connection) -> list[str | None]:
        return [await deadletter.requeue_dead_letter(conn, i) for i in entry_ids]

    for entry_id, job_id in zip(entry_ids, run(_with(url, body)), strict=True):
        console.print(f"requeued dead letter {entry_id} as job {job_id or '(undecodable)'}")


@dlq_app.command("purge")
@handle_errors
def purge_cmd(
    queue: str = QUEUE_OPTION,
    force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation."),
    url: str = URL_OPTION,
) -> None:
    """Remove dead letters (all, or of one queue); asks first."""
    what = f"dead letters of {queue}" if queue else "all dead letters"
    if not force:
        if not sys.stdin.isatty():
            raise fail("refusing to purge without confirmation: no terminal; pass --force", 2)
        if not typer.confirm(f"Remove {what}?", default=False):
            raise fail("purge cancelled; nothing removed", 1)

    async def body(conn: Connection) -> int:
        return await deadletter.purge_dead_letters(conn, queue)

    console.print(f"purged {run(_with(url, body))} {what}")
