"""Helpers shared by CLI commands: one-line errors, JSON output, confirmations, connection
handling.

With ``--json`` a command's output is plain text whatever the terminal claims (``FORCE_COLOR``,
a TTY): JSON goes to stdout unstyled, and its error lines carry no colour codes either.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from datetime import datetime
from enum import Enum
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .. import eventloop
from ..errors import ConfigurationError, NaqException
from ..log import setup_logging
from ..settings import load_settings
from ..transport import Connection

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

URL_OPTION = typer.Option(
    None, "-u", "--url", help="NATS URL(s), comma-separated (default: NAQ_NATS_URL)."
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of a table.")

#: The log levels ``--log-level`` accepts (any case), as ``NAQ_LOG_LEVEL`` does.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL_OPTION = typer.Option(
    None,
    "--log-level",
    "-l",
    help=f"naq's log level in this process: {', '.join(LOG_LEVELS)}, any case "
    "(default: NAQ_LOG_LEVEL, else INFO).",
    show_default=False,
)

#: Whether the running command was given ``--json`` (its parameter ``as_json``).
_json_output: ContextVar[bool] = ContextVar("naq_cli_json_output", default=False)


def json_output() -> bool:
    """Whether the running command prints JSON (it was given ``--json``)."""
    return _json_output.get()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one clear line to stderr and return the Exit to raise (without colour when the
    command prints JSON)."""
    if json_output():
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn naq errors into one line on stderr and exit code 1 (no traceback); note whether
    the command was given ``--json`` (a parameter named ``as_json``) for :func:`fail`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _json_output.set(kwargs.get("as_json") is True)
        try:
            return func(*args, **kwargs)
        except NaqException as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            _json_output.reset(token)

    return wrapper


def use_log_level(level: str | None) -> None:
    """Make ``level`` (from ``--log-level``) this process's log level: it takes the place of
    ``NAQ_LOG_LEVEL`` (the option wins over the environment), so the logging :func:`run` sets
    up uses it. ``None`` changes nothing. An unknown level is a
    :class:`~naq.errors.ConfigurationError` naming the option and the accepted levels."""
    if level is None:
        return
    name = level.strip().upper()
    if name not in LOG_LEVELS:
        raise ConfigurationError(
            f"--log-level {level!r} is not a log level (one of {', '.join(LOG_LEVELS)}, any case)"
        )
    os.environ["NAQ_LOG_LEVEL"] = name


def confirm_or_fail(question: str, *, force: bool, action: str, undone: str) -> None:
    """Ask ``question`` (y/N, on stderr so stdout keeps only output) unless ``force``; fail
    with exit 2 when there is no terminal to ask on, with exit 1 when the answer is no.
    ``action`` names what is refused ("purge"), ``undone`` what was left ("nothing removed")."""
    if force:
        return
    if not sys.stdin.isatty():
        raise fail(f"refusing to {action} without confirmation: no terminal; pass --force", 2)
    if not typer.confirm(question, default=False, err=True):
        raise fail(f"{action} cancelled; {undone}", 1)


def run(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine to completion for a command, with logging on (naq's records at
    ``NAQ_LOG_LEVEL``, the application's as loguru shows them, e.g. a job function's lines).

    If setting up fails (e.g. a bad ``NAQ_LOG_LEVEL``), ``coro`` is closed unrun, so the user
    sees the one error line and no "coroutine ... was never awaited" warning."""
    try:
        setup_logging(load_settings().log_level)
    except BaseException:
        coro.close()
        raise
    return eventloop.run(coro)


async def with_connection(url: str | None, body: Callable[[Connection], Awaitable[R]]) -> R:
    """Open a connection to ``url``, run ``body`` with it, close it."""
    conn = Connection(load_settings(url), name="naq-cli")
    await conn.connect()
    try:
        return await body(conn)
    finally:
        await conn.close()


def json_ready(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as dicts, enums as their values, datetimes
    as ISO 8601 strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """Print dataclasses/lists as JSON on stdout (field names as in the Python API, times
    in ISO 8601)."""
    sys.stdout.write(json.dumps(json_ready(value), indent=2, default=str) + "\n")
