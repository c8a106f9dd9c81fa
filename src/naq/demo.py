"""``naq demo``: an embedded server, a worker and a producer in one process."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .demo_tasks import blocking_io, count_primes, fetch_page
from .job import Job
from .queue import Queue
from .server import EmbeddedServer
from .worker import Worker

DEMO_QUEUE = "naq-demo"


def _calls() -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
    for i in range(12):
        calls.append((count_primes, (50_000 + 10_000 * i,), {}))
        calls.append((blocking_io, (0.1 + 0.02 * (i % 5),), {}))
        calls.append((fetch_page, (f"page-{i}", 0.05 + 0.01 * (i % 7)), {}))
    return calls


async def run_demo(nats_url: str, console: Console) -> int:
    """Enqueue a mix of jobs, run them on an in-process worker, show progress and results."""
    worker = Worker([DEMO_QUEUE], nats_url=nats_url, concurrency=8, worker_name="demo")
    worker_task = asyncio.create_task(worker.run())
    try:
        async with Queue(DEMO_QUEUE, nats_url=nats_url) as queue:
            started = time.perf_counter()
            jobs: list[Job] = []
            for func, args, kwargs in _calls():
                jobs.append(await queue.enqueue(func, *args, **kwargs))
            console.print(f"enqueued [bold]{len(jobs)}[/] jobs (sync and async) on {nats_url}")
            results: dict[str, Any] = {}
            columns = (
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as progress:
                bar = progress.add_task("running jobs", total=len(jobs))

                async def wait(job: Job) -> None:
                    results[job.job_id] = await job.result(timeout=60)
                    progress.advance(bar)

                await asyncio.gather(*(wait(job) for job in jobs))
            elapsed = time.perf_counter() - started
            table = Table(title=f"{len(jobs)} jobs finished in {elapsed:.2f} s")
            table.add_column("job id", style="dim")
            table.add_column("function")
            table.add_column("kind")
            table.add_column("result")
            for job in jobs[:9]:
                kind = "async" if job.function.endswith("fetch_page") else "sync"
                short = job.function.rpartition(":")[2]
                table.add_row(job.job_id[:12], short, kind, repr(results[job.job_id]))
            console.print(table)
            if len(jobs) > 9:
                console.print(f"... and {len(jobs) - 9} more, all completed")
    finally:
        worker.request_stop()
        await worker_task
    return 0


def main(console: Console | None = None) -> int:
    """Run the demo against ``NAQ_NATS_URL`` or a fresh embedded server."""
    console = console or Console()
    url = os.environ.get("NAQ_NATS_URL")
    if url:
        return asyncio.run(run_demo(url, console))
    with EmbeddedServer() as server:
        console.print(f"started an embedded nats-server (JetStream) at {server.url}")
        return asyncio.run(run_demo(server.url, console))
