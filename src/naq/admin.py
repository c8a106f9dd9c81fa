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
    consumers = await streams.consumers(conn, c.JOBS_STREAM)
    # jobs stored on each priority subject (waiting, or held by a worker), all queues at once
    stored = await streams.subject_counts(conn, c.JOBS_STREAM, f"{c.QUEUE_SUBJECT_PREFIX}*.*")
    # per queue and priority: (waiting, running); priority 0 is the queue's own consumer
    levels: dict[str, dict[int, tuple[int, int]]] = {}
    paused: dict[str, bool] = {}
    for consumer in consumers:
        found = c.PRIORITY_CONSUMER_RE.fullmatch(consumer.name)
        if found is not None:
            queue, priority = found.group(2), int(found.group(1))
        elif consumer.name.startswith(c.CONSUMER_PREFIX):
            queue, priority = consumer.name.removeprefix(c.CONSUMER_PREFIX), 0
            paused[queue] = consumer.paused
        else:
            continue
        levels.setdefault(queue, {})[priority] = (consumer.pending, consumer.ack_pending)
    for queue, by_priority in levels.items():
        for priority in c.PRIORITY_LEVELS:
            # a priority no worker pulls yet has no consumer: its jobs all wait
            count = stored.get(c.queue_subject(queue, priority), 0)
            running = by_priority.get(priority, (0, 0))[1]
            if count or priority in by_priority:
                by_priority[priority] = (max(0, count - running), running)
    infos: list[QueueInfo] = []
    for queue, by_priority in levels.items():
        completed, failed = totals.get(queue, (0, 0))
        infos.append(
            QueueInfo(
                name=queue,
                waiting=sum(waiting for waiting, _ in by_priority.values()),
                running=sum(running for _, running in by_priority.values()),
                scheduled=await count_scheduled(conn, queue),
                completed=completed,
                failed=failed,
                dead=dead.get(queue, 0),
                workers=sum(1 for w in workers if queue in w.queues),
                paused=paused.get(queue, False),
                waiting_by_priority={
                    p: waiting for p, (waiting, _) in sorted(by_priority.items()) if waiting
                },
            )
        )
    return sorted(infos, key=lambda q: q.name)
