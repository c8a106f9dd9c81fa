"""The async producer API: :class:`Queue` enqueues jobs and looks up their results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from . import bulk, deadletter
from . import constants as c
from .calls import prepare_call
from .dependencies import Dependencies, bounded
from .enqueue_hooks import EnqueueHooks
from .errors import (
    ConfigurationError,
    JobCancelledError,
    JobExecutionError,
    JobNotFoundError,
    JobTimeoutError,
    NaqTimeoutError,
    PublishNotConfirmedError,
    ServerError,
)
from .expiry import as_read
from .hooks import Hooks, as_hooks, global_hooks
from .info import JobInfo
from .job import Job, JobOptions, iter_calls, split_options
from .messages import job_header_block, job_headers
from .models import HeldMessage, JobEnvelope, JobRecord, JobStatus, encode, record_for
from .names import lookup_job_id
from .results import (
    ResultStore,
    absent_block,
    record_subject_of_valid_id,
)
from .serialization import warn_if_pickle
from .settings import Settings, load_settings, validate_queue_name
from .transport import Connection

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from .deadletter import DeadLetter
    from .scheduling import Schedule

_TIMEOUT_ERROR_TYPE = f"{JobTimeoutError.__module__}:{JobTimeoutError.__qualname__}"


class Queue:
    """A named queue on a NATS server: enqueue jobs, read their status and results.

    ``async with Queue("emails") as q: job = await q.enqueue(send, "a@b.c")``. A queue opens
    its connection on first use and closes it in :meth:`close` unless it was handed one.
    """

    def __init__(
        self,
        name: str | None = None,
        nats_url: str | None = None,
        *,
        connection: Connection | None = None,
        settings: Settings | None = None,
        hooks: Hooks | Sequence[object] | None = None,
        default_timeout: float | None = None,
    ) -> None:
        if default_timeout is not None:  # the original naq's option
            raise ConfigurationError(
                f"default_timeout={default_timeout!r} is the original naq's Queue option; naq "
                "takes a timeout per job: pass timeout= (seconds) to each enqueue call"
            )
        base = settings or (connection.settings if connection else load_settings(nats_url))
        self.settings = base.with_url(nats_url) if settings is not None else base
        self.name = validate_queue_name(name if name is not None else self.settings.default_queue)
        self._conn = connection
        self._owns_connection = connection is None
        self._closed = False
        self._results: ResultStore | None = None
        #: this queue's own hooks (``before_enqueue``, ``after_enqueue``), run after the
        #: global ones (:mod:`naq.hooks`)
        self.hooks = as_hooks(hooks)
        self._hooks_runner: EnqueueHooks | None = None  # made on first use (enqueue_sync
        # makes a queue per call)
        warn_if_pickle(self.settings, "producer")

    # -- lifecycle ------------------------------------------------------------------------
    async def connection(self) -> Connection:
        """The open connection (connecting on first use).

        A queue that was closed stays closed: opening a connection nobody would close again
        would leak it. Use ``naq.fetch_job_result(job.job_id)`` & co. after closing."""
        if self._conn is None:
            if self._closed:
                raise ConfigurationError(
                    f"queue {self.name!r} was closed; keep it open while you use it or its "
                    "jobs, or use the module-level helpers (naq.fetch_job_result(job_id), ...)"
                )
            self._conn = Connection(self.settings, name="naq-producer")
        conn = await self._conn.connect()
        if self.settings.events:
            await self._enqueue_hooks.attach(conn)
        return conn

    async def results(self) -> ResultStore:
        """The result store on this queue's connection (connecting on first use)."""
        if self._results is None:
            self._results = ResultStore(await self.connection())
        return self._results

    async def close(self) -> None:
        """Close the connection if this queue opened it."""
        if self._owns_connection:
            self._closed = True
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
                self._results = None

    async def __aenter__(self) -> Queue:
        await self.connection()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- enqueue --------------------------------------------------------------------------
    async def enqueue(self, func: Any, *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``func(*args, **kwargs)``; job options (``job_id``, ``max_retries``, ...)
        are taken out of ``kwargs`` and never reach the function."""
        options, call_kwargs = split_options(kwargs)
        job, envelope = self._prepare(func, args, call_kwargs, options)
        await self._publish_job(job, envelope, options)
        await self.after_enqueue(job)
        return job

    @property
    def _enqueue_hooks(self) -> EnqueueHooks:
        if self._hooks_runner is None:
            self._hooks_runner = EnqueueHooks(self.hooks, self.settings)
        return self._hooks_runner

    @property
    def has_enqueue_hooks(self) -> bool:
        """Whether an enqueue runs hooks (its own, global ones, or events)."""
        if self._hooks_runner is not None:
            return self._hooks_runner.active
        return self.settings.events or any(
            registry.has(name)
            for registry in (global_hooks, self.hooks)
            for name in ("before_enqueue", "after_enqueue")
        )

    async def before_enqueue(self, job: Job, envelope: JobEnvelope) -> None:
        """Run the ``before_enqueue`` hooks of a validated job about to be stored (the
        connection is open); the headers they set go into ``envelope``."""
        await self._enqueue_hooks.before(job, envelope)

    async def after_enqueue(self, job: Job) -> None:
        """Run the ``after_enqueue`` hooks of a stored job."""
        await self._enqueue_hooks.after(job)

    async def enqueue_many(
        self, calls: Iterable[Any], *, atomic: bool = False, **options: Any
    ) -> list[Job]:
        """Enqueue many ``(func, args, kwargs)`` calls at once (pipelined publishes).

        ``options`` apply to every job (except ``job_id``, which would collide). Everything
        is validated and serialized before the first publish. Jobs get ids
        ``<batch_id>-<n>``; their ``pending`` state is one batch record per chunk of
        jobs (see :mod:`naq.batches`), so a bulk enqueue costs one write per job.

        ``atomic=True`` publishes the jobs as one JetStream atomic batch: NATS stores every
        job or none. At most 1000 calls (the server's limit per batch), and not together
        with ``depends_on`` (:class:`ConfigurationError`). When NATS refuses the batch,
        nothing of it remains (its ``pending`` state is removed too) and a
        :class:`ServerError` says why. Without it, a refusal midway leaves the jobs
        published before it enqueued.
        """
        opts = JobOptions.build(options)
        if opts.job_id is not None:
            raise ConfigurationError("enqueue_many does not take job_id; ids are generated")
        if atomic is not False:
            return await bulk.enqueue_atomic(self, calls, opts, atomic)
        if opts.depends_on:
            return await self._enqueue_many_deferred(calls, opts)
        return await bulk.enqueue_chunked(self, calls, opts)

    def _prepare(
        self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], options: JobOptions
    ) -> tuple[Job, JobEnvelope]:
        return prepare_call(self, func, args, kwargs, options)

    async def _publish_job(self, job: Job, envelope: JobEnvelope, options: JobOptions) -> None:
        conn = await self.connection()
        await conn.ensure_jobs_stream()
        store = await self.results()
        await store.ready()
        await self.before_enqueue(job, envelope)
        if envelope.depends_on:
            await self._defer(job, envelope)
            return
        ttl = options.result_ttl or self.settings.result_ttl
        writes = enqueue_writes(self.settings, job, envelope, ttl)
        max_payload = conn.max_payload
        for subject, header_block, payload in writes:  # nothing is sent if one cannot be
            if len(payload) + len(header_block) > max_payload:
                conn.check_message(subject, payload, header_block)  # raises, naming it
        if options.job_id is None:
            # both in flight at once (one round trip)
            acks = [
                conn.send_nowait(subject, payload, header_block)
                for subject, header_block, payload in writes
            ]
            record_ack, job_ack = acks
            try:
                try:
                    await job_ack
                except (NaqTimeoutError, ServerError) as exc:
                    if isinstance(exc, PublishNotConfirmedError):  # re-sent to its deadline
                        raise PublishNotConfirmedError(f"job {job.job_id}: {exc}") from None
                    if isinstance(exc, ServerError) and exc.code != 503:
                        raise
                    await self._publish(conn, job, encode(envelope))  # retried, same id
            except BaseException:
                record_ack.add_done_callback(_retrieved)  # the job's error is the one raised
                raise
            await bulk.settle([record_ack])
            return
        payload = encode(envelope)
        record = record_for(envelope, JobStatus.PENDING, size=len(payload))
        existing = await store.create(record, ttl)
        if existing is None:
            await self._publish(conn, job, payload)
            return
        # The id is known: run nothing new. If the earlier enqueue may have failed between
        # storing the record and publishing, publish again: the stream drops a duplicate id.
        if (
            existing.status == JobStatus.PENDING.value
            and existing.enqueued_at is not None
            and time.time() - existing.enqueued_at < c.DUPLICATE_WINDOW - 5
        ):
            await self._publish(conn, job, payload)
        job.function = existing.function
        job.queue_name = existing.queue_name

    async def _enqueue_many_deferred(self, calls: Iterable[Any], opts: JobOptions) -> list[Job]:
        """``enqueue_many`` of jobs that all wait for ``depends_on``: each is deferred on
        its own (validated and serialized, every one, before the first is stored)."""
        prepared = [prepare_call(self, f, a, k, opts) for f, a, k in iter_calls(calls)]
        if not prepared:
            return []
        conn = await self.connection()
        await conn.ensure_jobs_stream()
        await (await self.results()).ready()
        for job, envelope in prepared:
            await self.before_enqueue(job, envelope)
            conn.check_message(c.queue_subject(self.name), encode(envelope), None)
        await bounded(self._defer(job, envelope) for job, envelope in prepared)
        for job, _envelope in prepared:
            await self.after_enqueue(job)
        return [job for job, _ in prepared]

    async def _defer(self, job: Job, envelope: JobEnvelope) -> None:
        """Store a job with ``depends_on`` as deferred (see :mod:`naq.dependencies`)."""
        payload = encode(envelope)
        held = HeldMessage(
            status=JobStatus.PENDING.value,
            headers=job_headers(
                self.settings,
                job.job_id,
                payload,
                envelope.headers,
                subject=c.queue_subject(job.queue_name, envelope.priority),
            ),
            payload=msgspec.Raw(payload),
        )
        conn = await self.connection()
        conn.check_message(c.queue_subject(job.queue_name, envelope.priority), payload, None)
        deps = Dependencies(conn, await self.results(), self.settings.result_ttl)
        record = await deps.defer(envelope, held)
        job.function, job.queue_name = record.function, record.queue_name

    async def _publish(self, conn: Connection, job: Job, payload: bytes) -> None:
        subject = c.queue_subject(job.queue_name, job.options.priority)
        await conn.publish_idempotent(
            subject,
            payload,
            job_headers(self.settings, job.job_id, payload, job.headers, subject=subject),
            f"job {job.job_id}",
        )

    # -- results and status ---------------------------------------------------------------
    async def get_job_info(self, job_id: str) -> JobInfo:
        """Everything known about ``job_id``; raises :class:`JobNotFoundError` if unknown."""
        lookup_job_id(job_id)
        store = await self.results()
        record = as_read(await store.get(job_id))
        if record is None:
            raise JobNotFoundError(f"job {job_id} not found (unknown, or its record expired)")
        if record.status == JobStatus.DEFERRED.value:
            deps = Dependencies(await self.connection(), store, self.settings.result_ttl)
            record.waiting_on = await deps.waiting_on(record)
        return JobInfo.from_record(record)

    async def get_job_status(self, job_id: str) -> JobStatus:
        """The status of ``job_id``; raises :class:`JobNotFoundError` if unknown."""
        return (await self.get_job_info(job_id)).status

    async def fetch_job_result(self, job_id: str, timeout: float | None = None) -> Any:
        """The return value of a completed job.

        With ``timeout`` waits up to that many seconds for the job to finish (pushed by a KV
        watch). Failed -> :class:`JobExecutionError`; cancelled -> :class:`JobCancelledError`,
        also at once for a job not started by its ``expires`` (no waiting for the timeout);
        unknown or unfinished -> :class:`JobNotFoundError`.
        """
        lookup_job_id(job_id)
        store = await self.results()
        if timeout is not None and timeout < 0:
            raise ConfigurationError(f"timeout must be >= 0, got {timeout!r}")
        if timeout:
            record = await store.wait_final(job_id, float(timeout))
        else:
            record = await store.get(job_id)
        return result_of(job_id, as_read(record))

    async def cancel_job(self, job_id: str) -> bool:
        """Cancel a job wherever it is: queued, deferred or scheduled, it never runs; running,
        an async job's task is cancelled and a sync job sees ``current_job().cancelled``
        (recorded ``cancelled`` when it returns). Jobs depending on it are cancelled too.
        True if it was cancelled; False if it had finished already (nothing changes).
        Unknown id -> :class:`JobNotFoundError`."""
        from .cancellation import cancel_job
        from .scheduling import oneoff

        lookup_job_id(job_id)
        conn = await self.connection()
        store = await self.results()
        await store.ready()
        deps = Dependencies(
            conn, store, self.settings.result_ttl, on_cancelled=self._enqueue_hooks.cancelled
        )
        return await cancel_job(
            conn,
            deps,
            store,
            job_id,
            default_ttl=self.settings.result_ttl,
            cancel_scheduled=lambda jid: oneoff.cancel(conn, jid),
            on_unreached=self._enqueue_hooks.cancelled,
        )

    async def purge(self) -> int:
        """Remove every waiting job of this queue; returns how many were removed."""
        from .admin import purge_queue_jobs

        return await purge_queue_jobs(await self.connection(), self.name)

    async def pause(self) -> None:
        """Pause this queue: no worker starts a job of it until :meth:`resume` (see
        :func:`naq.pause_queue`); jobs running now finish."""
        from .pausing import pause_queue

        await pause_queue(await self.connection(), self.name)

    async def resume(self) -> None:
        """Resume this paused queue: its workers take its jobs again at once (see
        :func:`naq.resume_queue`)."""
        from .pausing import resume_queue

        await resume_queue(await self.connection(), self.name)

    # -- dead letters (see naq.deadletter) ------------------------------------------------
    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """This queue's dead-letter entries, oldest first (at most ``limit``)."""
        return await deadletter.list_dead_letters(await self.connection(), self.name, limit)

    async def requeue_dead_letters(self) -> deadletter.BulkRequeue:
        """Requeue every dead letter of this queue (see :func:`naq.requeue_dead_letters`)."""
        return await deadletter.requeue_dead_letters(await self.connection(), self.name)

    async def purge_dead_letters(self) -> int:
        """Remove this queue's dead letters; returns how many."""
        return await deadletter.purge_dead_letters(await self.connection(), self.name)

    # -- scheduling (implemented in naq.scheduling) ---------------------------------------
    async def enqueue_at(self, when: datetime, func: Any, *args: Any, **kwargs: Any) -> Job:
        """Run ``func(*args, **kwargs)`` at ``when`` (datetime; naive = UTC), server-side:
        no scheduler process is needed. A time in the past runs at once."""
        from .scheduling import enqueue_at

        return await enqueue_at(self, when, func, *args, **kwargs)

    async def enqueue_in(
        self, delay: timedelta | float, func: Any, *args: Any, **kwargs: Any
    ) -> Job:
        """Run ``func(*args, **kwargs)`` after ``delay`` (timedelta or seconds)."""
        from .scheduling import enqueue_in

        return await enqueue_in(self, delay, func, *args, **kwargs)

    async def schedule(
        self,
        func: Any,
        *args: Any,
        cron: str | None = None,
        interval: timedelta | float | None = None,
        repeat: int | None = None,
        timezone: str | None = None,
        schedule_id: str | None = None,
        misfire: str = "once",
        **kwargs: Any,
    ) -> Schedule:
        """Run ``func(*args, **kwargs)`` on a ``cron`` rule or every ``interval``, ``repeat``
        times (None = forever); returns the :class:`~naq.Schedule` (see :func:`naq.schedule`)."""
        from .scheduling import schedule

        return await schedule(
            self,
            func,
            *args,
            cron=cron,
            interval=interval,
            repeat=repeat,
            timezone=timezone,
            schedule_id=schedule_id,
            misfire=misfire,
            **kwargs,
        )

    async def cancel_scheduled_job(self, schedule_id: str) -> bool:
        """Cancel a schedule or a waiting ``enqueue_at`` job; False if nothing was cancelled."""
        from .scheduling import cancel_scheduled_job

        return await cancel_scheduled_job(self, schedule_id)

    async def pause_scheduled_job(self, schedule_id: str) -> Schedule:
        """Pause a schedule or a waiting ``enqueue_at`` job."""
        from .scheduling import pause_scheduled_job

        return await pause_scheduled_job(self, schedule_id)

    async def resume_scheduled_job(self, schedule_id: str) -> Schedule:
        """Resume a paused schedule or ``enqueue_at`` job."""
        from .scheduling import resume_scheduled_job

        return await resume_scheduled_job(self, schedule_id)

    async def modify_scheduled_job(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change ``cron``, ``interval``, ``timezone``, ``repeat``, ``next_run`` or ``misfire``."""
        from .scheduling import modify_scheduled_job

        return await modify_scheduled_job(self, schedule_id, **changes)

    async def list_schedules(self, *, limit: int | None = None) -> list[Schedule]:
        """This queue's recurring schedules and waiting ``enqueue_at`` jobs, soonest first."""
        from .scheduling import list_schedules

        return await list_schedules(self, all_queues=False, limit=limit)


#: One message to publish: subject, encoded header block, payload.
Write = tuple[str, bytes, bytes]


def enqueue_writes(
    settings: Settings, job: Job, envelope: JobEnvelope, ttl: int
) -> tuple[Write, Write]:
    """The two writes of one enqueue: the job's ``pending`` record, create-if-absent (so it
    never replaces an outcome a fast worker stored first), and the job message with its id
    for deduplication."""
    payload = encode(envelope)
    record = encode(record_for(envelope, JobStatus.PENDING, size=len(payload)))
    subject = c.queue_subject(job.queue_name, envelope.priority)
    return (
        (record_subject_of_valid_id(job.job_id), absent_block(ttl), record),
        (
            subject,
            job_header_block(settings, job.job_id, payload, envelope.headers, subject=subject),
            payload,
        ),
    )


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen (its error is not the one reported)."""
    if not future.cancelled():
        future.exception()


def result_of(job_id: str, record: JobRecord | None) -> Any:
    """Turn a job record into its return value or the matching naq error."""
    from .codec import from_wire

    if record is None:
        raise JobNotFoundError(f"job {job_id} not found (unknown, or its record expired)")
    status = record.status
    if status == JobStatus.COMPLETED.value:
        return from_wire(record.result)
    detail = f"{record.error_type or 'Error'}: {record.error or ''}".rstrip(": ")
    if status == JobStatus.FAILED.value:
        cls = JobTimeoutError if record.error_type == _TIMEOUT_ERROR_TYPE else JobExecutionError
        raise cls(
            f"job {job_id} failed: {detail}",
            error_type=record.error_type,
            traceback=record.traceback,
        )
    if status == JobStatus.CANCELLED.value:
        why = f" ({record.error})" if record.error else ""
        raise JobCancelledError(f"job {job_id} was cancelled{why}", error_type=record.error_type)
    if status == JobStatus.DEAD.value:
        raise JobExecutionError(
            f"job {job_id} is dead (never ran properly): {detail}",
            error_type=record.error_type,
        )
    raise JobNotFoundError(f"job {job_id} has not finished (status: {status})")
