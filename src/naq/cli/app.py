"""The ``naq`` command: worker, server, demo, purge, listings."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .. import admin
from ..__about__ import __version__
from ..cluster import DEFAULT_CLUSTER_NAME, cluster_args, run_cluster_foreground
from ..errors import JobNotFoundError
from ..hooks import Hooks, load_middleware
from ..info import JobInfo
from ..metrics import DEFAULT_METRICS_HOST
from ..models import JobStatus
from ..purge import purge_waiting_jobs
from ..queue import Queue
from ..server import default_store_dir, run_server_foreground
from ..settings import load_settings
from ..transport import Connection
from ..worker import Worker
from .attempts_table import attempts_table, traceback_texts
from .common import (
    JSON_OPTION,
    LOG_LEVEL_OPTION,
    URL_OPTION,
    confirm_or_fail,
    console,
    fail,
    handle_errors,
    json_ready,
    print_json,
    run,
    use_log_level,
    with_connection,
)
from .dlq_cmds import dlq_app
from .progress import ProgressBars
from .queues_table import queues_table
from .times import when_text
from .workers_table import workers_table

app = typer.Typer(
    name="naq",
    help="naq: the NATS Asynchronous Queue.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"naq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_print_version,
        is_eager=True,
        help="Print naq's version and exit.",
    ),
) -> None:
    """naq: the NATS Asynchronous Queue."""


@app.command()
@handle_errors
def worker(
    queues: list[str] = typer.Argument(None, help="Queues to take jobs from (default: default)."),
    concurrency: int = typer.Option(10, "-c", "--concurrency", help="Jobs run at once."),
    name: str = typer.Option(None, "-n", "--name", help="Worker name prefix."),
    shutdown_timeout: float = typer.Option(
        30.0, "--shutdown-timeout", help="Seconds running jobs get to finish on SIGTERM."
    ),
    burst: bool = typer.Option(False, "--burst", help="Exit once the queues are empty."),
    module_path: list[str] = typer.Option(
        None, "-m", "--module-path", help="Directory whose modules jobs may run (repeatable)."
    ),
    ack_wait: float = typer.Option(30.0, "--ack-wait", help="Lease length in seconds."),
    heartbeat_interval: float = typer.Option(
        5.0, "--heartbeat-interval", help="Seconds between status heartbeats."
    ),
    max_crashes: int = typer.Option(
        3, "--max-crashes", help="Runs alone after a worker died holding a job, before it is dead."
    ),
    events: bool | None = typer.Option(
        None, "--events/--no-events", help="Publish job events (default: NAQ_EVENTS)."
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        help="Serve Prometheus /metrics on this port (workers of a host may share it).",
    ),
    metrics_host: str = typer.Option(
        DEFAULT_METRICS_HOST,
        "--metrics-host",
        help="Address /metrics listens on (127.0.0.1: this host only).",
    ),
    middleware: list[str] = typer.Option(
        None,
        "--middleware",
        help="Hooks to run, as module:name of a naq.Middleware (class or instance) or "
        "naq.Hooks, importable from here (repeatable).",
    ),
    url: str = URL_OPTION,
    log_level: str | None = LOG_LEVEL_OPTION,
) -> None:
    """Run a worker on QUEUES."""
    use_log_level(log_level)
    hooks = [load_middleware(spec) for spec in middleware or ()]
    w = Worker(
        queues or None,
        nats_url=url,
        concurrency=concurrency,
        worker_name=name,
        shutdown_timeout=shutdown_timeout,
        module_paths=module_path or None,
        burst=burst,
        ack_wait=ack_wait,
        heartbeat_interval=heartbeat_interval,
        max_crashes=max_crashes,
        events=events,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        hooks=Hooks(*hooks) if hooks else None,
    )
    run(w.run())


@app.command()
@handle_errors
def server(
    port: int = typer.Option(4222, "--port", "-p", help="Client port."),
    store_dir: Path = typer.Option(None, "--store-dir", help="JetStream store directory."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    cluster_nodes: int = typer.Option(
        0,
        "--cluster-nodes",
        help="Run a local cluster of this many nodes (development): client ports PORT, "
        "PORT+1, ..., route ports PORT+2000, ..., stores STORE_DIR/n1, ...; connect with "
        "all URLs comma-separated and NAQ_REPLICAS=3.",
    ),
    name: str = typer.Option(
        "", "--name", help="This node's server name in a cluster (unique, e.g. n1)."
    ),
    cluster: str = typer.Option(
        "",
        "--cluster",
        help="Run as one node of a cluster, accepting routes on this URL "
        "(e.g. nats://0.0.0.0:6222). Needs --name and --routes.",
    ),
    routes: str = typer.Option(
        "",
        "--routes",
        help="The other nodes' cluster URLs, comma-separated "
        "(e.g. nats://host2:6222,nats://host3:6222).",
    ),
    cluster_name: str = typer.Option(
        DEFAULT_CLUSTER_NAME, "--cluster-name", help="The cluster's name (same on every node)."
    ),
) -> None:
    """Run an embedded nats-server with JetStream in the foreground: one server, one node
    of a cluster (--name/--cluster/--routes), or a local cluster (--cluster-nodes 3)."""
    store = store_dir or default_store_dir()
    if cluster_nodes:
        if cluster or routes or name:
            raise fail(
                "--cluster-nodes runs a whole local cluster: leave out --name/--cluster/--routes"
            )
        urls = ",".join(f"nats://{host}:{port + n}" for n in range(cluster_nodes))
        console.print(f"{cluster_nodes}-node JetStream cluster on {urls}, stores under {store}")
        raise typer.Exit(run_cluster_foreground(cluster_nodes, port, store, host))
    extra: list[str] = []
    if cluster or routes or name:
        if not (cluster and name):
            raise fail(
                "a cluster node needs --name and --cluster (and --routes to the other nodes)"
            )
        route_list = [r.strip() for r in routes.split(",") if r.strip()]
        extra = cluster_args(name, cluster, route_list, cluster_name)
    what = f"node {name} of cluster {cluster_name}, " if extra else ""
    console.print(f"nats-server with JetStream ({what}nats://{host}:{port}), store {store}")
    raise typer.Exit(run_server_foreground(port, store, host, extra))


@app.command()
@handle_errors
def demo() -> None:
    """Start a server (or use NAQ_NATS_URL), a worker and a producer; show jobs finishing."""
    from ..demo import main as demo_main
    from ..log import setup_logging

    setup_logging("WARNING")
    raise typer.Exit(demo_main(console))


@app.command()
@handle_errors
def purge(
    queues: list[str] = typer.Argument(..., help="Queues to empty."),
    force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation."),
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove every waiting job from QUEUES (asks first); a progress bar on a terminal."""
    settings = load_settings(url)
    names = [Queue(q, settings=settings).name for q in queues]  # validates names first
    confirm_or_fail(
        f"Remove every waiting job from {', '.join(names)}?",
        force=force,
        action="purge",
        undone="nothing removed",
    )

    with ProgressBars(show=not as_json) as bars:

        async def body(conn: Connection) -> list[tuple[str, int]]:
            return [
                (q, await purge_waiting_jobs(conn, q, on_progress=bars.track(f"purge {q}")))
                for q in names
            ]

        counts = run(with_connection(url, body))
    if as_json:
        print_json([{"queue": queue, "purged": count} for queue, count in counts])
        return
    for queue, count in counts:
        console.print(f"purged {count} jobs from {queue}")


@app.command("list-workers")
@handle_errors
def list_workers(url: str = URL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List live workers (as many columns as the terminal is wide for; times in UTC)."""
    workers = run(with_connection(url, admin.list_workers))
    if as_json:
        # naq's fields, and the original naq's status words (busy/idle/stopping) beside them
        print_json([{**json_ready(w), "state": w.state} for w in workers])
        return
    if not workers:
        console.print("no workers running")
        return
    console.print(workers_table(workers, console))


@app.command()
@handle_errors
def queues(url: str = URL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List queues: waiting, running, scheduled, deferred, completed, failed and dead jobs,
    jobs done and failed in the last minute, workers, consumers, paused (as many columns
    as the terminal is wide for)."""
    infos = run(with_connection(url, admin.list_queues))
    if as_json:
        print_json(infos)
        return
    if not infos:
        console.print("no queues yet")
        return
    console.print(queues_table(infos, console))


def _call_text(info: JobInfo) -> str:
    """The call's arguments, as Python would write them (``-`` when not kept)."""
    if info.args is None:
        return "- (not kept: over 4 KB, or pickled)"
    parts = [repr(a) for a in info.args]
    parts += [f"{name}={value!r}" for name, value in (info.kwargs or {}).items()]
    return ", ".join(parts) or "(none)"


def _dependency_rows(info: JobInfo) -> list[tuple[str, str]]:
    """The rows of ``naq job`` about dependencies: the jobs it depends on, those it still
    waits for (while deferred), and whether it runs when one of them failed."""
    rows: list[tuple[str, str]] = []
    if info.depends_on:
        rows.append(("depends on", ", ".join(info.depends_on)))
    if info.status is JobStatus.DEFERRED:
        rows.append(("waiting on", ", ".join(info.waiting_on) or "-"))
    if info.allow_failure:
        rows.append(("allow failure", "yes"))
    if info.waiting_for and info.status is JobStatus.PENDING:
        rows.append(("waiting for", info.waiting_for))
    return rows


@app.command()
@handle_errors
def job(
    job_id: str,
    url: str = URL_OPTION,
    as_json: bool = JSON_OPTION,
    traceback: bool = typer.Option(
        False, "--traceback", help="Show each attempt's traceback too (where one was kept)."
    ),
) -> None:
    """Show everything known about job JOB_ID: status, times, its error (for a cancelled
    job, why), the jobs it depends on and, while deferred, those it waits for; then each
    attempt: worker, start, duration, error."""

    async def body(conn: Connection) -> JobInfo:
        return await Queue(connection=conn).get_job_info(job_id)

    try:
        info = run(with_connection(url, body))
    except JobNotFoundError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(info)
        return
    table = Table(title=f"job {info.job_id}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    rows = [
        ("status", info.status.value),
        ("queue", info.queue_name),
        ("function", info.function),
        ("arguments", _call_text(info)),
        ("worker", info.worker_id or "-"),
        ("enqueued", when_text(info.enqueued_at)),
        ("started", when_text(info.started_at)),
        ("finished", when_text(info.finished_at)),
        ("attempts", str(len(info.attempts))),
        ("error", info.error or "-"),
    ]
    if info.next_attempt_at is not None:
        rows.append(("next attempt", when_text(info.next_attempt_at)))
    if info.expires_at is not None:
        rows.append(("expires", when_text(info.expires_at)))
    rows.extend(_dependency_rows(info))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if info.attempts:
        console.print(attempts_table(info.attempts))
    if traceback:
        for text in traceback_texts(info.attempts):
            console.print(text, highlight=False, markup=False, soft_wrap=True)


app.add_typer(dlq_app, name="dlq")


from .dashboard_cmd import register as _register_dashboard_cmd  # noqa: E402
from .events_cmd import register as _register_events_cmd  # noqa: E402
from .info_cmd import register as _register_info_cmd  # noqa: E402
from .limits_cmds import register as _register_limits_cmds  # noqa: E402
from .queue_cmds import register as _register_queue_cmds  # noqa: E402
from .schedule_cmds import register as _register_schedule_cmds  # noqa: E402

_register_schedule_cmds(app)
_register_limits_cmds(app)
_register_queue_cmds(app)
_register_info_cmd(app)
_register_events_cmd(app)
_register_dashboard_cmd(app)


def main() -> None:
    """Entry point of the ``naq`` script (also ``python -m naq``: completion scripts are
    made for the name ``naq`` either way)."""
    app(prog_name="naq")
