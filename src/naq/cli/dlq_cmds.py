"""``naq dlq list|show|requeue|purge``: inspect and act on the dead-letter stream."""

from __future__ import annotations

import typer
from rich.table import Table

from .. import deadletter
from ..deadletter import BulkRequeue, DeadLetter
from ..transport import Connection
from .common import (
    JSON_OPTION,
    URL_OPTION,
    confirm_or_fail,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
    run,
)
from .common import with_connection as _with
from .progress import ProgressBars
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
def requeue_cmd(
    entry_ids: list[int] = typer.Argument(None, help="Ids of the dead letters to requeue."),
    every: bool = typer.Option(
        False, "--all", help="Requeue every dead letter (of --queue); asks first."
    ),
    queue: str = typer.Option(None, "--queue", "-q", help="With --all: only this queue."),
    force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation."),
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Publish the original jobs again (same job ids) and remove the entries: those named
    by ENTRY_IDS, or with --all every one (of --queue). A progress bar on a terminal."""
    if every == bool(entry_ids):
        raise fail("name the dead letters to requeue by id, or pass --all (not both)", 2)
    if queue is not None and not every:
        raise fail("--queue applies to --all only", 2)
    if every:
        what = f"dead letters of {queue}" if queue else "all dead letters"
        confirm_or_fail(
            f"Requeue {what}?", force=force, action="requeue", undone="nothing requeued"
        )
    with ProgressBars(show=not as_json) as bars:
        on_progress = bars.track("requeue")

        async def body(conn: Connection) -> BulkRequeue:
            if every:
                return await deadletter.requeue_dead_letters(conn, queue, on_progress=on_progress)
            requeued: list[tuple[int, str | None]] = []
            for entry_id in entry_ids:
                requeued.append((entry_id, await deadletter.requeue_dead_letter(conn, entry_id)))
                if on_progress is not None:
                    on_progress(len(requeued), len(entry_ids))
            return BulkRequeue(requeued, [])

        outcome = run(_with(url, body))
    _print_requeue(outcome, summary=every, as_json=as_json)
    if outcome.skipped:
        raise fail(f"{len(outcome.skipped)} dead letters could not be requeued; left in place")


def _print_requeue(outcome: BulkRequeue, *, summary: bool, as_json: bool) -> None:
    """Show what ``naq dlq requeue`` did: a line per entry, or with ``summary`` one count;
    a line on stderr per entry left in place."""
    if as_json:
        print_json(
            {
                "requeued": [{"id": i, "job_id": job} for i, job in outcome.requeued],
                "skipped": [{"id": i, "reason": why} for i, why in outcome.skipped],
            }
        )
        return
    if summary:
        console.print(f"requeued {len(outcome.requeued)} dead letters")
    else:
        for entry_id, job_id in outcome.requeued:
            console.print(f"requeued dead letter {entry_id} as job {job_id or '(undecodable)'}")
    for entry_id, why in outcome.skipped:
        err_console.print(f"dead letter {entry_id} not requeued: {why}", highlight=False)


@dlq_app.command("purge")
@handle_errors
def purge_cmd(
    queue: str = QUEUE_OPTION,
    force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation."),
    url: str = URL_OPTION,
) -> None:
    """Remove dead letters (all, or of one queue); asks first."""
    what = f"dead letters of {queue}" if queue else "all dead letters"
    confirm_or_fail(f"Remove {what}?", force=force, action="purge", undone="nothing removed")

    async def body(conn: Connection) -> int:
        return await deadletter.purge_dead_letters(conn, queue)

    console.print(f"purged {run(_with(url, body))} {what}")
