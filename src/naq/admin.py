"""Administrative reads and writes shared by the API, the sync client and the CLI: list
workers and queues, purge a queue. Each takes a borrowed :class:`Connection`."""

from __future__ import annotations

import json

import msgspec
import nats.js.errors

from . import constants as c
from .connection import Connection
from .errors import NaqConnectionError
from .job import QueueInfo, WorkerInfo
from .models import decode_worker
from .scheduling.oneoff import count_waiting
from .settings import validate_queue_name


async def purge_queue_jobs(conn: Connection, queue: str) -> int:
    """Purge waiting jobs of ``queue`` from the jobs stream; returns the number removed."""
    validate_queue_name(queue)
    await conn.ensure_jobs_stream()
    request = json.dumps({"filter": c.queue_subject(queue)}).encode()
    reply = await conn.nc.request(f"$JS.API.STREAM.PURGE.{c.JOBS_STREAM}", request, timeout=10)
    data = json.loads(reply.data)
    if "error" in data:
        raise NaqConnectionError(f"purge of queue {queue} failed: {data['error']}")
    return int(data.get("purged", 0))


async def list_workers(conn: Connection) -> list[WorkerInfo]:
    """The workers alive now (their records expire a few heartbeats after they die)."""
    kv = await conn.kv(c.WORKERS_BUCKET)
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return []
    workers: list[WorkerInfo] = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue
        if not entry.value:
            continue
        try:
            workers.append(WorkerInfo.from_record(decode_worker(entry.value)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    return sorted(workers, key=lambda w: w.started_at)


async def _dead_letter_count(conn: Connection, queue: str) -> int:
    await conn.ensure_dlq_stream()
    info = await conn.js.stream_info(c.DLQ_STREAM, subjects_filter=c.dlq_subject(queue))
    subjects = info.state.subjects or {}
    return int(subjects.get(c.dlq_subject(queue), 0))


async def list_queues(conn: Connection) -> list[QueueInfo]:
    """Every queue that has a consumer, with waiting/running counts and its workers."""
    await conn.ensure_jobs_stream()
    workers = await list_workers(conn)
    infos: list[QueueInfo] = []
    for consumer in await conn.js.consumers_info(c.JOBS_STREAM):
        name = consumer.name or ""
        if not name.startswith(c.CONSUMER_PREFIX):
            continue
        queue = name.removeprefix(c.CONSUMER_PREFIX)
        infos.append(
            QueueInfo(
                name=queue,
                waiting=int(consumer.num_pending or 0),
                running=int(consumer.num_ack_pending or 0),
                scheduled=await count_waiting(conn, queue),
                dead=await _dead_letter_count(conn, queue),
                workers=sum(1 for w in workers if queue in w.queues),
                paused=bool(getattr(consumer, "paused", False)),
            )
        )
    return sorted(infos, key=lambda q: q.name)
