"""Administrative reads and writes shared by the API, the sync client and the CLI: list
workers and queues, purge a queue. Each takes a borrowed :class:`Connection`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import msgspec

from . import constants as c
from . import stats
from .dependencies import count_deferred
from .info import QueueInfo, WorkerInfo
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
    now = time.time()
    for key in await kv.keys(conn, c.WORKERS_BUCKET):
        entry = await kv.get(conn, c.WORKERS_BUCKET, key)
        if entry is None:
            continue
        try:
            workers.append(WorkerInfo.from_record(decode_worker(entry.value), now))
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


@dataclass(slots=True)
class _QueueConsumers:
    """What the consumers of one queue hold, per priority: (waiting, running)."""

    levels: dict[int, tuple[int, int]] = field(default_factory=dict)
    consumers: int = 0
    paused: bool = False


def _by_queue(consumers: list[streams.ConsumerCounts]) -> dict[str, _QueueConsumers]:
    """naq's consumers of the jobs stream, gathered per queue (others are left out)."""
    queues: dict[str, _QueueConsumers] = {}
    for consumer in consumers:
        found = c.PRIORITY_CONSUMER_RE.fullmatch(consumer.name)
        if found is not None:
            queue, priority = found.group(2), int(found.group(1))
        elif consumer.name.startswith(c.CONSUMER_PREFIX):
            queue, priority = consumer.name.removeprefix(c.CONSUMER_PREFIX), 0
        else:
            continue
        entry = queues.setdefault(queue, _QueueConsumers())
        entry.levels[priority] = (consumer.pending, consumer.ack_pending)
        entry.consumers += 1
        if found is None:  # the queue's own consumer says whether it is paused
            entry.paused = consumer.paused
    return queues


async def list_queues(conn: Connection, workers: list[WorkerInfo] | None = None) -> list[QueueInfo]:
    """Every queue that has a consumer: its waiting, running, scheduled, deferred and dead
    jobs; the jobs its workers completed and failed, in all and during the last minute
    (up to a heartbeat late); its workers (``workers``, if given, is the list of
    :func:`list_workers` read already) and consumers."""
    await conn.ensure_jobs_stream()
    await conn.ensure_bucket(c.RESULTS_BUCKET)
    if workers is None:
        workers = await list_workers(conn)
    dead = await _dead_letter_counts(conn)
    totals = await stats.read_all(conn)
    queues = _by_queue(await streams.consumers(conn, c.JOBS_STREAM))
    # jobs stored on each priority subject (waiting, or held by a worker), all queues at once
    stored = await streams.subject_counts(conn, c.JOBS_STREAM, f"{c.QUEUE_SUBJECT_PREFIX}*.*")
    for queue, entry in queues.items():
        by_priority = entry.levels
        for priority in c.PRIORITY_LEVELS:
            # a priority no worker pulls yet has no consumer: its jobs all wait
            count = stored.get(c.queue_subject(queue, priority), 0)
            running = by_priority.get(priority, (0, 0))[1]
            if count or priority in by_priority:
                by_priority[priority] = (max(0, count - running), running)
    names = sorted(queues)
    scheduled = await asyncio.gather(*(count_scheduled(conn, q) for q in names))
    deferred = await asyncio.gather(*(count_deferred(conn, q) for q in names))
    infos: list[QueueInfo] = []
    for queue, scheduled_count, deferred_count in zip(names, scheduled, deferred, strict=True):
        entry = queues[queue]
        by_priority = entry.levels
        counts = totals.get(queue, stats.QueueTotals(0, 0))
        # the server counts jobs handed back to wait (retry delay, full limit) as running;
        # their workers report them
        retrying = sum(w.retrying.get(queue, 0) for w in workers)
        limited = sum(w.limited.get(queue, 0) for w in workers)
        unacked = sum(running for _, running in by_priority.values())
        held = min(unacked, retrying + limited)
        infos.append(
            QueueInfo(
                name=queue,
                waiting=sum(waiting for waiting, _ in by_priority.values()) + min(limited, held),
                running=unacked - held,
                scheduled=scheduled_count,
                deferred=deferred_count,
                retrying=min(retrying, held),
                completed=counts.completed,
                failed=counts.failed,
                dead=dead.get(queue, 0),
                completed_last_minute=counts.completed_last_minute,
                failed_last_minute=counts.failed_last_minute,
                workers=sum(1 for w in workers if queue in w.queues),
                consumers=entry.consumers,
                paused=entry.paused,
                waiting_by_priority={
                    p: waiting for p, (waiting, _) in sorted(by_priority.items()) if waiting
                },
            )
        )
    return infos
