"""``naq queue pause|resume Q``: stop and restart the workers' deliveries from a queue."""

from __future__ import annotations

import typer

from .. import pausing
from ..settings import validate_queue_name
from ..transport import Connection
from .common import URL_OPTION, console, handle_errors, run
from .common import with_connection as _with

queue_app = typer.Typer(help="Operate on one queue: pause it, resume it.")

QUEUE_ARGUMENT = typer.Argument(..., help="Queue name.")


@queue_app.command("pause")
@handle_errors
def pause_cmd(queue: str = QUEUE_ARGUMENT, url: str = URL_OPTION) -> None:
    """Pause QUEUE: no worker starts a job of it until it is resumed; running jobs finish.
    A queue no worker has taken jobs from yet is paused all the same."""
    name = validate_queue_name(queue)  # checked before connecting

    async def body(conn: Connection) -> None:
        await pausing.pause_queue(conn, name)

    run(_with(url, body))
    console.print(f"paused queue {name}", highlight=False)


@queue_app.command("resume")
@handle_errors
def resume_cmd(queue: str = QUEUE_ARGUMENT, url: str = URL_OPTION) -> None:
    """Resume QUEUE: its workers take its jobs again at once."""
    name = validate_queue_name(queue)

    async def body(conn: Connection) -> None:
        await pausing.resume_queue(conn, name)

    run(_with(url, body))
    console.print(f"resumed queue {name}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``naq queue`` to the ``naq`` app."""
    app.add_typer(queue_app, name="queue")
