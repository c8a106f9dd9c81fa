"""Administrative reads and writes shared by the API, the sync client and the CLI: list
workers and queues, purge a queue. Each takes a borrowed :class:`Connection`."""

from __future__ import annotations

import msgspec

from . import constants as c
from . import stats
from .job import QueueInfo, WorkerInfo
from .models import decode_worker
from .purge import purge_waiting_jobs
from .transport import Connection, kv, streams


async def purge_queue_jobs(conn: Connection, queue: str) -> int:
    """Purge the waiting jobs of ``queue`` from the jobs stream and mark their records
    ``cancelled`` (``error_type`` ``naq:purged``, so their waiters stop waiting); returns
    the number removed."""
    return await purge_waiting_jobs(conn, queue)


async def list_workers(conn: Connection) -> list[WorkerInfo]:
    """The workers alive now (their records expire a few heartbeats after they die)."""
    workers: list[WorkerInfo] = []
    for key in await kv.keys(conn, c.WORKERS_BUCKET):
        entry = await kv.get(conn, c.WORKERS_BUCKET, key)
        if entry is None:
            continue
        try:
            workers.append(WorkerInfo.from_record(decode_worker(entry.value)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return sorted(workers, key=lambda w: w.started_at)


async def count_scheduled(conn: Connection, queue: str | None = None) -> int:
    """How many one-off jobs wait on their time (of ``queue``, or all), paused included."""
    prefix = c.SCHEDULE_SUBJECT_PREFIX + (f"{queue}." if queue else "")
    return await streams.count_subjects(conn, c.SCHEDULES_STREAM, f"{prefix}>")


async def _dead_letter_counts(conn: Connection) -> dict[str, int]:
    await conn.ensure_dlq_stream()
    counts = await streams.subject_counts(conn, c.DLQ_STREAM, f"{c.DLQ_SUBJECT_PREFIX}*")
    return {k.removeprefix(c.DLQ_SUBJECT_PREFIX): v for k, v in counts.items()}


async def list_queues(conn: Connection) -> list[QueueInfo]:
    """Every queue that has a consumer: its waiting, running, scheduled and dead jobs, the
    jobs its workers completed and failed (totals, up to a heartbeat late), its workers."""
    await conn.ensure_jobs_stream()
    workers = await list_workers(conn)
    dead = await _dead_letter_counts(conn)
    totals = await stats.read_all(conn)
    infos: list[QueueInfo] = []
    for consumer in await streams.consumers(conn, c.JOBS_STREAM):
        if not consumer.name.startswith(c.CONSUMER_PREFIX):
            continue
        queue = consumer.name.removeprefix(c.CONSUMER_PREFIX)
        completed, failed = totals.get(queue, (0, 0))
        infos.append(
            QueueInfo(
                name=queue,
                waiting=consumer.pending,
                running=consumer.ack_pending,
                scheduled=await count_scheduled(conn, queue),
                completed=completed,
                failed=failed,
                dead=dead.get(queue, 0),
                workers=sum(1 for w in workers if queue in w.queues),
                paused=consumer.paused,
            )
        )
    return sorted(infos, key=lambda q: q.name)
