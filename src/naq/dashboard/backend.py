"""What the dashboard reads and does, over one NATS connection it holds for its lifetime:
the same library calls the CLI and the Python API make (no logic of its own; the shapes it
returns are in :mod:`.models`, built by :mod:`.readings`)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from .. import constants as c
from .. import deadletter, limits
from ..admin import list_queues, list_workers
from ..dependencies import Dependencies
from ..errors import JobNotFoundError
from ..events import read_events
from ..info import JobInfo, QueueInfo, WorkerInfo
from ..models import MAX_RECORDED_CALL, JobStatus
from ..queue import Queue
from ..results import ResultStore
from ..scheduling import Schedule, list_schedules, oneoff
from ..settings import Settings, validate_queue_name
from ..transport import Connection, kv, streams
from ..transport.tail import last_sequence
from . import readings
from .models import (
    BulkRequeued,
    DeadLetterSummary,
    DeadLetterView,
    JobDetail,
    LimitView,
    Overview,
    QueueDetail,
    Requeued,
    Skipped,
    Throughput,
)

#: Dead letters the overview shows (the newest).
RECENT_FAILURES = 10
#: Stored event messages a queue page looks back over, and the recent jobs it shows.
EVENTS_LOOKBACK = 2000
RECENT_JOBS = 50
EVENTS_OFF = (
    "events off: no events stored in the last hour (run workers with NAQ_EVENTS=1 to see "
    "recent jobs here)"
)


class Backend:
    """The dashboard's connection and the operations on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn = Connection(settings, name="naq-dashboard")

    async def start(self) -> None:
        """Connect (a missing server is one clear :class:`~naq.NaqConnectionError`)."""
        await self.conn.connect()

    async def stop(self) -> None:
        """Disconnect."""
        await self.conn.close()

    @property
    def connected(self) -> bool:
        """Whether NATS is reachable now (the pages show a banner while it is not)."""
        return self.conn.is_connected

    def queue(self, name: str | None = None) -> Queue:
        """A :class:`~naq.Queue` on the dashboard's connection."""
        return Queue(name, connection=self.conn, settings=self.settings)

    # -- reads ----------------------------------------------------------------------------
    async def workers(self) -> list[WorkerInfo]:
        """The live workers."""
        return await list_workers(self.conn)

    async def queues(self) -> list[QueueInfo]:
        """Every queue with its counts."""
        return await list_queues(self.conn)

    async def overview(self) -> Overview:
        """Queues, workers, the newest dead letters and each queue's throughput now."""
        workers = await list_workers(self.conn)
        queues = await list_queues(self.conn, workers)
        now = datetime.now(UTC)
        return Overview(
            queues=queues,
            workers=workers,
            recent_failures=await self.recent_dead_letters(RECENT_FAILURES),
            throughput=[
                Throughput(
                    queue=q.name,
                    at=now,
                    completed_last_minute=q.completed_last_minute,
                    failed_last_minute=q.failed_last_minute,
                )
                for q in queues
            ],
        )

    async def queue_info(self, name: str) -> QueueInfo:
        """One queue's counts; :class:`~naq.JobNotFoundError` if no worker serves it or
        ever did (it has no consumer)."""
        validate_queue_name(name)
        found = [q for q in await list_queues(self.conn) if q.name == name]
        if not found:
            raise JobNotFoundError(f"no queue {name!r} (no worker has served it)")
        return found[0]

    async def queue_detail(self, name: str) -> QueueDetail:
        """One queue: counts, the jobs running now, recent jobs from the events stream."""
        info = await self.queue_info(name)
        events_on = await self.events_on()
        recent = []
        if events_on:
            found = read_events(self.conn, queue=name, last=EVENTS_LOOKBACK, follow=False)
            recent = readings.recent_jobs([event async for event in found], RECENT_JOBS)
        return QueueDetail(
            queue=info,
            running_jobs=await self.running_jobs(name),
            events=events_on,
            events_note=None if events_on else EVENTS_OFF,
            recent_jobs=recent,
        )

    async def running_jobs(self, queue: str) -> list[str]:
        """Ids of the jobs of ``queue`` its workers run now (a worker of several queues
        names its jobs without their queue: their records tell)."""
        ids: list[str] = []
        unsure: list[str] = []
        for worker in await list_workers(self.conn):
            if queue in worker.queues:
                (ids if worker.queues == [queue] else unsure).extend(worker.running_jobs)
        if unsure:
            store = ResultStore(self.conn)
            records = await asyncio.gather(*(store.get(job_id) for job_id in unsure))
            ids += [r.job_id for r in records if r is not None and r.queue_name == queue]
        return sorted(set(ids))

    async def events_on(self) -> bool:
        """Whether the events stream holds any event (workers record them)."""
        await self.conn.ensure_events_stream()
        first, last = await last_sequence(self.conn, c.EVENTS_STREAM)
        return last > 0 and first <= last

    async def job(self, job_id: str) -> JobInfo:
        """Everything known about a job (:class:`~naq.JobNotFoundError` if unknown)."""
        return await self.queue().get_job_info(job_id)

    async def job_detail(self, job_id: str) -> JobDetail:
        """The job, its call (from its record, or its message while naq holds it), result
        and dependants."""
        info = await self.job(job_id)
        store = ResultStore(self.conn)
        record = await store.get(job_id)
        payload: bytes | None = None
        if record is not None and record.held is not None:
            payload = bytes(record.held.payload)  # deferred: its message waits in the record
        elif info.schedule_id is None and info.status == JobStatus.SCHEDULED:
            one_off, _ = await oneoff.find(self.conn, job_id)
            payload = one_off.data if one_off is not None else None
        if payload is not None:
            args, kwargs, note = readings.job_call(payload)
        elif record is not None and record.args is not None:
            args, kwargs, note = list(record.args), dict(record.kwargs or {}), None
        else:
            args, kwargs = None, None
            note = (
                "not kept: a job's record keeps its arguments when its message is at most "
                f"{MAX_RECORDED_CALL:,} bytes and not pickled"
            )
        deps = Dependencies(self.conn, store, self.settings.result_ttl)
        return JobDetail(
            job=info,
            args=args,
            kwargs=kwargs,
            arguments_note=note,
            result=record.result if record is not None else None,
            traceback=record.traceback if record is not None else None,
            dependants=await deps.children(job_id),
        )

    async def schedules(self) -> list[Schedule]:
        """Every recurring schedule and waiting one-off job, soonest first."""
        return await list_schedules(self.queue(), all_queues=True)

    async def limits(self) -> list[LimitView]:
        """Every limit definition with its use now."""
        specs = await limits.list_limits(self.conn)
        await self.conn.ensure_bucket(c.LIMIT_STATE_BUCKET)
        state = await kv.snapshot(self.conn, c.LIMIT_STATE_BUCKET)
        return readings.limit_views(specs, state, time.time())

    async def dead_letters(self, queue: str | None, limit: int) -> list[DeadLetterSummary]:
        """Dead letters, oldest first (at most ``limit``), of ``queue`` or all."""
        entries = await deadletter.list_dead_letters(self.conn, queue, limit)
        return [readings.dead_letter_summary(e) for e in entries]

    async def recent_dead_letters(self, limit: int) -> list[DeadLetterSummary]:
        """The newest dead letters (at most ``limit``), newest first."""
        await self.conn.ensure_dlq_stream()
        first, last = await last_sequence(self.conn, c.DLQ_STREAM)
        found: list[DeadLetterSummary] = []
        seq = max(first, last - limit + 1, 1)
        while seq <= last:
            msg = await streams.get_message(
                self.conn, c.DLQ_STREAM, subject=f"{c.DLQ_SUBJECT_PREFIX}*", next_from=seq
            )
            if msg is None:
                break
            found.append(readings.dead_letter_summary(await self._dead_letter(msg.seq)))
            seq = msg.seq + 1
        return found[::-1]

    async def _dead_letter(self, entry_id: int) -> deadletter.DeadLetter:
        return await deadletter.get_dead_letter(self.conn, entry_id)

    async def dead_letter(self, entry_id: int) -> DeadLetterView:
        """One dead letter in full (:class:`~naq.JobNotFoundError` if there is none)."""
        return readings.dead_letter_view(await self._dead_letter(entry_id))

    # -- actions --------------------------------------------------------------------------
    async def pause_queue(self, name: str) -> None:
        """Pause ``name``: no worker starts its jobs until resumed."""
        await self.queue(name).pause()

    async def resume_queue(self, name: str) -> None:
        """Resume a paused queue."""
        await self.queue(name).resume()

    async def cancel_job(self, job_id: str) -> bool:
        """Cancel a job wherever it is; False if it had finished already."""
        return await self.queue().cancel_job(job_id)

    async def requeue_dead_letter(self, entry_id: int) -> Requeued:
        """Publish a dead letter's job again and remove the entry."""
        return Requeued(
            id=entry_id, job_id=await deadletter.requeue_dead_letter(self.conn, entry_id)
        )

    async def requeue_dead_letters(self, queue: str | None) -> BulkRequeued:
        """Requeue every dead letter (of ``queue``, or of all queues)."""
        done = await deadletter.requeue_dead_letters(self.conn, queue)
        return BulkRequeued(
            requeued=[Requeued(id=i, job_id=job) for i, job in done.requeued],
            skipped=[Skipped(id=i, reason=why) for i, why in done.skipped],
        )

    async def delete_dead_letter(self, entry_id: int) -> None:
        """Remove one dead letter (:class:`~naq.JobNotFoundError` if there is none)."""
        await self._dead_letter(entry_id)
        await streams.delete_message(self.conn, c.DLQ_STREAM, entry_id)

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        """Pause a schedule or a waiting one-off job."""
        return await self.queue().pause_scheduled_job(schedule_id)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Resume a paused schedule or one-off job."""
        return await self.queue().resume_scheduled_job(schedule_id)

    async def run_schedule_now(self, schedule_id: str) -> Schedule:
        """Move a schedule's (or one-off job's) next run to now."""
        return await self.queue().modify_scheduled_job(schedule_id, next_run=datetime.now(UTC))

    async def cancel_schedule(self, schedule_id: str) -> None:
        """Cancel a schedule or a waiting one-off job (:class:`~naq.JobNotFoundError` if
        there is none)."""
        if not await self.queue().cancel_scheduled_job(schedule_id):
            raise JobNotFoundError(f"no scheduled job or schedule {schedule_id!r}")

    async def set_limit(self, name: str, concurrency: int | None, rate: str | None) -> LimitView:
        """Define (or redefine) limit ``name``."""
        spec = await limits.set_limit(self.conn, name, concurrency, rate)
        return readings.limit_views([spec], [], time.time())[0]

    async def delete_limit(self, name: str) -> None:
        """Delete limit ``name`` (:class:`~naq.JobNotFoundError` if there is none)."""
        if not await limits.delete_limit(self.conn, name):
            raise JobNotFoundError(f"no limit {name} to delete")
