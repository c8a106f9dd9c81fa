"""CLI commands for scheduling: ``naq scheduler``, ``naq list-scheduled``, ``naq job-control``."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from enum import StrEnum
from typing import Any

import typer
from loguru import logger
from rich.table import Table

from ..errors import ConfigurationError, JobNotFoundError
from ..models import JobStatus
from ..names import lookup_job_id
from ..queue import Queue
from ..scheduling import Schedule, Scheduler, control, recurring
from ..scheduling.misfire import DEFAULT_GRACE
from ..scheduling.store import ScheduleStore
from ..scheduling.timeutil import from_ts, parse_rfc3339
from ..transport import Connection
from .common import (
    JSON_OPTION,
    LOG_LEVEL_OPTION,
    URL_OPTION,
    console,
    fail,
    handle_errors,
    print_json,
    run,
    use_log_level,
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


def json_ready(schedule: Schedule) -> dict[str, Any]:
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
    log_level: str | None = LOG_LEVEL_OPTION,
) -> None:
    """Enqueue the runs of recurring schedules until SIGTERM/SIGINT (any number may run)."""
    use_log_level(log_level)
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
        print_json([json_ready(s) for s in schedules])
        return
    _print_schedules(schedules)


#: ``naq job-control --help`` (single line breaks would be kept as they are).
JOB_CONTROL_HELP = (
    "Cancel any job or schedule; pause, resume or reschedule a schedule or scheduled job."
    "\n\n"
    "cancel: ID is a recurring schedule's id first; otherwise a job id, whatever the job's "
    "state (queued, deferred, scheduled or running; see naq.cancel_job). Prints "
    "'cancelled job ID' (or 'cancelled schedule ID')."
    "\n\n"
    "Exit code 0 when something was cancelled; 1 when the job had finished already "
    "('job ID already completed; nothing to cancel', nothing changes), when the id is "
    "unknown, or on any other error (one line on stderr)."
)


def job_control(
    target_id: str = typer.Argument(
        ..., metavar="ID", help="Schedule id, or job id (cancel: any job; others: enqueue_at/in)."
    ),
    action: Action = typer.Argument(..., help="cancel | pause | resume | reschedule"),
    at: str | None = typer.Option(
        None, "--at", help="reschedule: new time (ISO 8601; naive = UTC)."
    ),
    in_seconds: float | None = typer.Option(None, "--in", help="reschedule: seconds from now."),
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Cancel any job or schedule; pause, resume or reschedule a schedule or scheduled job
    (the command's help, with its exit codes, is :data:`JOB_CONTROL_HELP`)."""
    if action is not Action.reschedule and (at is not None or in_seconds is not None):
        raise ConfigurationError("--at/--in only apply to reschedule")
    if action is Action.cancel:
        _cancel(target_id, url, as_json)
        return
    next_run: datetime | float | None = None
    if action is Action.reschedule:
        if (at is None) == (in_seconds is None):
            raise ConfigurationError("reschedule needs exactly one of --at ISO or --in SECONDS")
        if at is not None:
            next_run = from_ts(parse_rfc3339(at))
        elif in_seconds is not None:
            next_run = float(in_seconds)

    verb = str(action.value)

    async def body(conn: Connection) -> Schedule:
        queue = Queue(connection=conn)
        if verb == "pause":
            return await control.pause_scheduled_job(queue, target_id)
        if verb == "resume":
            return await control.resume_scheduled_job(queue, target_id)
        return await control.modify_scheduled_job(queue, target_id, next_run=next_run)

    result = run(with_connection(url, body))
    if as_json:
        print_json(json_ready(result))
        return
    when = result.next_run.isoformat() if result.next_run else "-"
    console.print(f"{target_id}: {result.status}, next run {when}")


@dataclasses.dataclass(frozen=True)
class Cancelled:
    """What ``naq job-control ID cancel`` cancelled: a ``schedule`` or a ``job``."""

    kind: str

    @property
    def key(self) -> str:
        """The JSON field naming the id (``schedule_id`` or ``job_id``)."""
        return f"{self.kind}_id"


def _cancel(target_id: str, url: str | None, as_json: bool) -> None:
    """``naq job-control ID cancel``: a recurring schedule, else any job."""

    async def body(conn: Connection) -> Cancelled | JobStatus:
        # the command prints the outcome itself: naq.cancellation's record of it would
        # repeat it (disabled here, after run() turned naq's records on)
        logger.disable("naq.cancellation")
        return await cancel_schedule_or_job(conn, target_id)

    result = run(with_connection(url, body))
    if isinstance(result, JobStatus):
        raise fail(f"job {target_id} already {result.value}; nothing to cancel")
    if as_json:
        print_json({result.key: target_id, "cancelled": True})
    else:
        console.print(f"cancelled {result.kind} {target_id}")


async def cancel_schedule_or_job(conn: Connection, target_id: str) -> Cancelled | JobStatus:
    """Cancel the recurring schedule ``target_id``, or else the job ``target_id`` wherever
    it is. Returns what was cancelled, or the final status of a job that had finished
    already. Unknown id -> :class:`JobNotFoundError` saying there is nothing to cancel."""
    lookup_job_id(target_id, "nothing to cancel: job or schedule", "id")
    if await recurring.cancel(ScheduleStore(conn), target_id):
        return Cancelled("schedule")
    queue = Queue(connection=conn)
    try:
        if await queue.cancel_job(target_id):
            return Cancelled("job")
        return (await queue.get_job_info(target_id)).status
    except JobNotFoundError:
        raise JobNotFoundError(
            f"nothing to cancel: no job or schedule {target_id} (unknown, or its record expired)"
        ) from None


def register(app: typer.Typer) -> None:
    """Add the scheduling commands to the ``naq`` app."""
    app.command("scheduler")(handle_errors(scheduler))
    app.command("list-scheduled")(handle_errors(list_scheduled))
    app.command("job-control", help=JOB_CONTROL_HELP)(handle_errors(job_control))
