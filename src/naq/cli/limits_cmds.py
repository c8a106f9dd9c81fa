"""``naq limits list|set|delete``: the shared limits every worker holds jobs to."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from .. import limits
from ..limits import LimitSpec
from ..transport import Connection
from .common import JSON_OPTION, URL_OPTION, console, fail, handle_errors, print_json, run
from .common import with_connection as _with

limits_app = typer.Typer(
    help="Shared limits: at most N jobs at once and/or R starts per s/m/h, across all workers."
)

NAME_ARGUMENT = typer.Argument(
    ..., help="Limit name: 'stripe', 'user:42', a family 'user:*', or 'queue:<queue>'."
)


def _describe(spec: LimitSpec) -> str:
    parts = []
    if spec.concurrency is not None:
        parts.append(f"concurrency {spec.concurrency}")
    if spec.rate is not None:
        parts.append(f"rate {spec.rate}")
    return f"limit {spec.name}: {', '.join(parts)}"


def _whole_number(option: str, text: str | None) -> int | None:
    """``text`` as an int, or one error line naming ``option`` (typer's own error for a bad
    int is a usage box, not one line)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise fail(f"{option} must be a whole number >= 1, got {text!r}") from None


@limits_app.command("list")
@handle_errors
def list_cmd(url: str = URL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List the defined limits: name, concurrency and rate."""
    specs = run(_with(url, limits.list_limits))
    if as_json:
        print_json([spec.to_json() for spec in specs])
        return
    if not specs:
        console.print("no limits defined")
        return
    table = Table(title="limits", box=box.SIMPLE_HEAD)
    table.add_column("name", overflow="fold")  # a name a user copies: folded, never cut
    table.add_column("concurrency", justify="right", no_wrap=True)
    table.add_column("rate", justify="right", no_wrap=True)
    for spec in specs:
        concurrency = "-" if spec.concurrency is None else str(spec.concurrency)
        table.add_row(spec.name, concurrency, "-" if spec.rate is None else str(spec.rate))
    console.print(table)


@limits_app.command("set")
@handle_errors
def set_cmd(
    name: str = NAME_ARGUMENT,
    concurrency: str = typer.Option(
        None,
        "--concurrency",
        "-c",
        metavar="N",
        help="At most this many jobs holding it run at once.",
    ),
    rate: str = typer.Option(
        None, "--rate", "-r", metavar="RATE", help="At most this many starts: 100/s, 10/m, 500/h."
    ),
    url: str = URL_OPTION,
) -> None:
    """Define (or redefine) limit NAME, shared by every worker."""
    spec = limits.define(name, _whole_number("--concurrency", concurrency), rate)  # checked first

    async def body(conn: Connection) -> LimitSpec:
        return await limits.set_limit(conn, spec.name, spec.concurrency, spec.rate)

    console.print(_describe(run(_with(url, body))), highlight=False)


@limits_app.command("delete")
@handle_errors
def delete_cmd(name: str = NAME_ARGUMENT, url: str = URL_OPTION) -> None:
    """Delete limit NAME: jobs taking it run unlimited by it."""
    limits.check_limit_name(name)

    async def body(conn: Connection) -> bool:
        return await limits.delete_limit(conn, name)

    if not run(_with(url, body)):
        raise fail(f"no limit {name} to delete")
    console.print(f"deleted limit {name}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``naq limits`` to the ``naq`` app."""
    app.add_typer(limits_app, name="limits")
