"""CLI commands for scheduling: ``naq scheduler``, ``naq list-scheduled``, ``naq job-control``."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum
from typing import Any

import typer
from rich.table import Table

from ..errors import ConfigurationError
from ..queue import Queue
from ..scheduling import Schedule, Scheduler, control
from ..scheduling.misfire import DEFAULT_GRACE
from ..scheduling.timeutil import from_ts, parse_rfc3339
from ..transport import Connection
from .common import (
    JSON_OPTION,
    URL_OPTION,
    console,
    fail,
    handle_errors,
    print_json,
    run,
    with_connection,
)


class Action(StrEnum):
    """What ``naq job-control`` does."""

    cancel = "cancel"
    pause = "pause"
    resume = "resume"
    reschedule = "reschedule"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _plain(schedule: Schedule) -> dict[str, Any]:
    data = dataclasses.asdict(schedule)
    data["next_run"] = _iso(schedule.next_run)
    data["last_run"] = _iso(schedule.last_run)
    return data


def _rule(s: Schedule) -> str:
    if s.one_off:
        return "once"
    if s.cron is not None:
        return f"cron {s.cron}" + (f" ({s.timezone})" if s.timezone else "")
    return f"every {s.interval:g}s"


def _print_schedules(schedules: list[Schedule]) -> None:
    if not schedules:
        console.print("no scheduled jobs")
        return
    table = Table(title="scheduled")
    for col in ("id", "queue", "function", "rule", "next run (UTC)", "runs", "status"):
        table.add_column(col)
    for s in schedules:
        runs = f"{s.runs}/{s.repeat}" if s.repeat else str(s.runs)
        when = s.next_run.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if s.next_run else "-"
        table.add_row(s.schedule_id, s.queue_name, s.function, _rule(s), when, runs, s.status)
    console.print(table)


def scheduler(
    url: str = URL_OPTION,
    lock_ttl: float = typer.Option(
        5.0, "--lock-ttl", help="Seconds a silent leader keeps the lock."
    ),
    misfire_grace: float = typer.Option(
        DEFAULT_GRACE, "--misfire-grace", help="Seconds a run may be late before it is a misfire."
    ),
) -> None:
    """Enqueue the runs of recurring schedules until SIGTERM/SIGINT (any number may run)."""
    run(Scheduler(url, lock_ttl=lock_ttl, misfire_grace=misfire_grace).run())


def list_scheduled(
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
    queue: str = typer.Option(None, "--queue", "-q", help="Only this queue."),
    limit: int = typer.Option(None, "--limit", help="Show at most this many (soonest first)."),
) -> None:
    """List recurring schedules and jobs waiting for their time (enqueue_at/enqueue_in)."""

    async def body(conn: Connection) -> list[Schedule]:
        return await control.list_schedules(
            Queue(queue, connection=conn), all_queues=queue is None, limit=limit
        )

    schedules = run(with_connection(url, body))
    if as_json:
        print_json([_plain(s) for s in schedules])
        return
    _print_schedules(schedules)


def job_control(
    schedule_id: str = typer.Argument(..., help="Schedule id, or job id from enqueue_at/in."),
    action: Action = typer.Argument(..., help="cancel | pause | resume | reschedule"),
    at: str = typer.Option(None, "--at", help="reschedule: new time (ISO 8601; naive = UTC)."),
    in_seconds: float = typer.Option(None, "--in", help="reschedule: seconds from now."),
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Cancel, pause, resume or reschedule a schedule or a scheduled job."""
    if action is not Action.reschedule and (at is not None or in_seconds is not None):
        raise ConfigurationError("--at/--in only apply to reschedule")
    next_run: datetime | float | None = None
    if action is Action.reschedule:
        if (at is None) == (in_seconds is None):
            raise ConfigurationError("reschedule needs exactly one of --at ISO or --in SECONDS")
        next_run = from_ts(parse_rfc3339(at)) if at is not None else float(in_seconds)

    verb = str(action.value)

    async def body(conn: Connection) -> Schedule | bool:
        queue = Queue(connection=conn)
        if verb == "cancel":
            return await control.cancel_scheduled_job(queue, schedule_id)
        if verb == "pause":
            return await control.pause_scheduled_job(queue, schedule_id)
        if verb == "resume":
            return await control.resume_scheduled_job(queue, schedule_id)
        return await control.modify_scheduled_job(queue, schedule_id, next_run=next_run)

    result = run(with_connection(url, body))
    if isinstance(result, bool):
        if not result:
            raise fail(f"nothing to cancel: {schedule_id} is unknown, already ran, or finished")
        if as_json:
            print_json({"schedule_id": schedule_id, "cancelled": True})
        else:
            console.print(f"cancelled {schedule_id}")
        return
    if as_json:
        print_json(_plain(result))
        return
    when = result.next_run.isoformat() if result.next_run else "-"
    console.print(f"{schedule_id}: {result.status}, next run {when}")


def register(app: typer.Typer) -> None:
    """Add the scheduling commands to the ``naq`` app."""
    app.command("scheduler")(handle_errors(scheduler))
    app.command("list-scheduled")(handle_errors(list_scheduled))
    app.command("job-control")(handle_errors(job_control))
