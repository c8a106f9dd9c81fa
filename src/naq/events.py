"""The events stream: what happens to jobs and workers, as it happens.

Turned on with ``NAQ_EVENTS=1`` (or ``Worker(events=True)``, ``naq worker --events``), a
producer publishes ``enqueued`` and a worker ``started``, ``progress``, ``retrying``,
``completed``, ``failed``, ``cancelled``, ``dead``, ``worker_started`` and
``worker_stopped`` to ``naq.events.<queue>.<kind>`` in the ``NAQ_EVENTS`` stream (memory,
an hour and 64 MiB at most, oldest dropped first). Read them with :func:`watch_events` or
``naq events``.

Both sides are hooks (:mod:`naq.hooks`): :class:`ProducerEvents` and :class:`WorkerEvents`.

A worker sends the events of one loop turn together: each message is a JSON array of one
or more events of one kind on one queue, in the order they happened (a change of kind or
queue starts a new message), so one job's events stay in order and a busy worker sends a
few messages per turn instead of two per job. An ``enqueued`` event is sent just before its
job (on the producer's connection, so it is stored first), a ``retrying`` event before the
job is handed back: a job's events are stored in the order they happened. Events are best
effort (published without waiting for the server): an event lost while NATS is away is not
sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from operator import attrgetter
from typing import Any

import msgspec
from loguru import logger

from . import constants as c
from .errors import ConfigurationError, NaqException
from .hooks import JobRun, Middleware, Outcome
from .settings import Settings, load_settings, validate_queue_name
from .transport import Connection, StoredMessage
from .transport.tail import last_sequence, tail
from .utctime import from_epoch


class EventKind:
    """The kinds of event (the last token of an event's subject)."""

    ENQUEUED = "enqueued"
    STARTED = "started"
    PROGRESS = "progress"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"
    WORKER_STARTED = "worker_started"
    WORKER_STOPPED = "worker_stopped"


#: Every kind, in the order of a job's life.
EVENT_KINDS = (
    EventKind.ENQUEUED,
    EventKind.STARTED,
    EventKind.PROGRESS,
    EventKind.RETRYING,
    EventKind.COMPLETED,
    EventKind.FAILED,
    EventKind.CANCELLED,
    EventKind.DEAD,
    EventKind.WORKER_STARTED,
    EventKind.WORKER_STOPPED,
)
_OUTCOME_KINDS = {
    Outcome.COMPLETED: EventKind.COMPLETED,
    Outcome.FAILED: EventKind.FAILED,
    Outcome.RETRYING: EventKind.RETRYING,
    Outcome.CANCELLED: EventKind.CANCELLED,
}
#: The longest error text an event carries.
_MAX_ERROR = 500


class WireEvent(msgspec.Struct, omit_defaults=True, kw_only=True):
    """An event as stored (one element of a message's JSON array)."""

    kind: str
    queue: str
    at: float
    job_id: str | None = None
    worker_id: str | None = None
    attempt: int | None = None
    function: str | None = None
    error: str | None = None
    duration: float | None = None
    progress: float | None = None
    message: str | None = None
    retry_in: float | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[WireEvent])
_queue_and_kind = attrgetter("queue", "kind")


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a job or a worker (:func:`watch_events`)."""

    kind: str
    queue: str
    at: datetime
    job_id: str | None = None
    worker_id: str | None = None
    attempt: int | None = None
    function: str | None = None
    #: failed, retrying, dead, cancelled: what went wrong (type and text) or why
    error: str | None = None
    #: completed, failed, retrying, cancelled: seconds the function ran
    duration: float | None = None
    progress: float | None = None
    message: str | None = None
    #: retrying: seconds until the next attempt
    retry_in: float | None = None
    #: the stream sequence of the message that carried it
    seq: int = 0

    @classmethod
    def from_wire(cls, wire: WireEvent, seq: int) -> Event:
        """Build from a stored event."""
        return cls(
            kind=wire.kind,
            queue=wire.queue,
            at=from_epoch(wire.at),
            job_id=wire.job_id,
            worker_id=wire.worker_id,
            attempt=wire.attempt,
            function=wire.function,
            error=wire.error,
            duration=wire.duration,
            progress=wire.progress,
            message=wire.message,
            retry_in=wire.retry_in,
            seq=seq,
        )


def event_subject(queue: str, kind: str) -> str:
    """``naq.events.<queue>.<kind>``."""
    return f"{c.EVENTS_SUBJECT_PREFIX}{queue}.{kind}"


def decode_events(data: bytes, seq: int = 0) -> list[Event]:
    """The events of one stored message (empty if it is not an events message)."""
    try:
        return [Event.from_wire(w, seq) for w in _decoder.decode(data)]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


class EventPublisher:
    """Sends events on a connection: gathered during one loop turn, then sent as one message
    per run of events with the same queue and kind (:meth:`flush`)."""

    __slots__ = ("_conn", "_dropped", "_flush_scheduled", "_pending")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: list[WireEvent] = []
        self._flush_scheduled = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Events that could not be sent (NATS away)."""
        return self._dropped

    def emit(self, event: WireEvent) -> None:
        """Send ``event`` at the end of this loop turn."""
        self._pending.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Send every gathered event now."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for _key, run in groupby(pending, _queue_and_kind):
            self._send(list(run))

    def _send(self, events: list[WireEvent]) -> None:
        first = events[0]
        try:
            self._conn.post(event_subject(first.queue, first.kind), _encoder.encode(events))
        except NaqException as exc:  # disconnected, or an event over max_payload
            if self._dropped == 0:
                logger.warning("could not publish {} event(s): {}", len(events), exc)
            self._dropped += len(events)


def _error_text(run: JobRun) -> str | None:
    text = f"{type(run.error).__name__}: {run.error}" if run.error is not None else run.reason
    return (text or "")[:_MAX_ERROR] or None


class WorkerEvents(Middleware):
    """A worker's events, from its hooks."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    def _job_event(self, kind: str, run: JobRun, **fields: Any) -> WireEvent:
        return WireEvent(
            kind=kind,
            queue=run.queue,
            at=time.time(),
            job_id=run.job_id,
            worker_id=run.worker_id,
            attempt=run.attempt,
            function=run.function or None,
            **fields,
        )

    def before_job(self, run: JobRun) -> None:
        """``started``."""
        self.publisher.emit(
            WireEvent(
                kind=EventKind.STARTED,
                queue=run.queue,
                at=run.started_at or time.time(),
                job_id=run.job_id,
                worker_id=run.worker_id,
                attempt=run.attempt,
                function=run.function,
            )
        )

    def after_job(self, run: JobRun) -> None:
        """``completed``, ``failed``, ``retrying`` or ``cancelled``."""
        kind = _OUTCOME_KINDS.get(run.outcome or "")
        if kind is None:
            return
        started, duration = run.started_at, run.duration
        self.publisher.emit(
            WireEvent(
                kind=kind,
                queue=run.queue,
                at=started + duration if started and duration is not None else time.time(),
                job_id=run.job_id,
                worker_id=run.worker_id,
                attempt=run.attempt,
                function=run.function,
                duration=run.duration,
                error=None if kind == EventKind.COMPLETED else _error_text(run),
                retry_in=run.retry_in,
            )
        )
        if kind == EventKind.RETRYING:
            self.publisher.flush()  # stored before the job can be delivered again

    def on_dead(self, run: JobRun) -> None:
        """``dead``: refused without running."""
        self.publisher.emit(self._job_event(EventKind.DEAD, run, error=_error_text(run)))

    def on_cancel(self, run: JobRun) -> None:
        """``cancelled`` before it started (or expired)."""
        self.publisher.emit(self._job_event(EventKind.CANCELLED, run, error=_error_text(run)))

    def on_progress(self, run: JobRun) -> None:
        """``progress``."""
        event = self._job_event(
            EventKind.PROGRESS, run, progress=run.progress, message=run.progress_message
        )
        self.publisher.emit(event)

    def _worker_event(self, kind: str, worker: Any) -> None:
        for queue in worker.queues:
            self.publisher.emit(
                WireEvent(kind=kind, queue=queue, at=time.time(), worker_id=worker.worker_id)
            )
        self.publisher.flush()

    def on_worker_start(self, worker: Any) -> None:
        """``worker_started``, once per queue of the worker."""
        self._worker_event(EventKind.WORKER_STARTED, worker)

    def on_worker_stop(self, worker: Any) -> None:
        """``worker_stopped``, once per queue of the worker."""
        self._worker_event(EventKind.WORKER_STOPPED, worker)


def enqueued_event(queue: str, job_id: str, function: str) -> WireEvent:
    """The ``enqueued`` event of a job."""
    return WireEvent(
        kind=EventKind.ENQUEUED, queue=queue, at=time.time(), job_id=job_id, function=function
    )


class ProducerEvents(Middleware):
    """A producer's events: ``enqueued`` from its ``before_enqueue`` hook, sent at once, on
    the connection the job is then sent on, so the event is stored before the job; and
    ``cancelled`` for a scheduled or deferred job it cancelled (no worker would tell)."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    def before_enqueue(self, job: Any) -> None:
        """``enqueued``."""
        self.publisher.emit(enqueued_event(job.queue_name, job.job_id, job.function))
        self.publisher.flush()

    def on_cancel(self, run: JobRun) -> None:
        """``cancelled``: a scheduled or deferred job cancelled before a worker saw it."""
        self.publisher.emit(
            WireEvent(
                kind=EventKind.CANCELLED,
                queue=run.queue,
                at=time.time(),
                job_id=run.job_id,
                function=run.function or None,
                error=_error_text(run),
            )
        )
        self.publisher.flush()


def _subject_filter(queue: str | None, kinds: Iterable[str] | None) -> tuple[str, frozenset[str]]:
    """The subject filter for ``queue`` and the kinds to keep (empty: all)."""
    if queue is not None:
        validate_queue_name(queue)
    wanted = frozenset(kinds or ())
    unknown = wanted - set(EVENT_KINDS)
    if unknown:
        raise ConfigurationError(
            f"unknown event kind(s) {', '.join(sorted(unknown))}; kinds are: "
            + ", ".join(EVENT_KINDS)
        )
    kind = next(iter(wanted)) if len(wanted) == 1 else "*"
    return event_subject(queue or "*", kind), wanted


async def read_events(
    conn: Connection,
    *,
    queue: str | None = None,
    kinds: Iterable[str] | None = None,
    since: datetime | None = None,
    last: int | None = None,
    follow: bool = True,
) -> AsyncIterator[Event]:
    """Events of ``queue`` (all queues: None) of ``kinds`` (all: None), in stored order.

    From ``since``; or, with ``last``, about the ``last`` most recent events (those of the
    last ``last`` messages of the stream); neither: only new ones. ``follow=False`` ends
    once the events stored when it started were read."""
    subject, wanted = _subject_filter(queue, kinds)
    await conn.ensure_events_stream()
    start_seq: int | None = None
    if last is not None and since is None:
        first, newest = await last_sequence(conn, c.EVENTS_STREAM)
        start_seq = max(first, newest - max(0, last) + 1, 1)
    if not follow and start_seq is None and since is None:
        return
    reader = await tail(conn, c.EVENTS_STREAM, subject, start_seq=start_seq, start_time=since)
    try:
        if not follow and reader.pending_at_start == 0:
            return
        async for message, pending in reader:
            for event in decode_events(message.data, message.seq):
                if not wanted or event.kind in wanted:
                    yield event
            if not follow and pending == 0:
                return
    finally:
        await reader.stop()


class _JobOnly(msgspec.Struct):
    job_id: str | None = None


_job_ids_decoder = msgspec.json.Decoder(list[_JobOnly])


def job_ids_of(data: bytes) -> list[str]:
    """The job ids an events message tells of (cheaper than decoding its events whole)."""
    try:
        return [e.job_id for e in _job_ids_decoder.decode(data) if e.job_id is not None]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


def queue_of(subject: str) -> str:
    """The queue of an events subject ``naq.events.<queue>.<kind>``."""
    return subject[len(c.EVENTS_SUBJECT_PREFIX) :].rsplit(".", 1)[0]


async def read_event_messages(
    conn: Connection, *, start_seq: int | None = None, since: datetime | None = None
) -> AsyncIterator[StoredMessage]:
    """Every events message (undecoded: :func:`decode_events`) from ``start_seq``, or from
    ``since``, or (neither) from now on, as it is stored; for a reader that looks into few
    of them (the dashboard)."""
    await conn.ensure_events_stream()
    reader = await tail(
        conn,
        c.EVENTS_STREAM,
        f"{c.EVENTS_SUBJECT_PREFIX}>",
        start_seq=start_seq,
        start_time=since if start_seq is None else None,
    )
    try:
        async for message, _pending in reader:
            yield message
    finally:
        await reader.stop()


async def watch_events(
    queue: str | None = None,
    kinds: Iterable[str] | None = None,
    *,
    since: datetime | None = None,
    nats_url: str | None = None,
    settings: Settings | None = None,
) -> AsyncIterator[Event]:
    """Every new event (or every event since ``since``) of ``queue`` (None: all queues) and
    ``kinds`` (None: all), as it is stored; ``async for event in naq.watch_events(): ...``.

    It follows until the loop that iterates it stops (``break``) and keeps its own
    connection meanwhile. Events are published only where ``NAQ_EVENTS=1`` is set (the
    workers' and producers' environment)."""
    conn = Connection((settings or load_settings()).with_url(nats_url), name="naq-events")
    await conn.connect()
    try:
        async for event in read_events(conn, queue=queue, kinds=kinds, since=since):
            yield event
    finally:
        await conn.close()


__all__ = [
    "EVENT_KINDS",
    "Event",
    "EventKind",
    "EventPublisher",
    "ProducerEvents",
    "WorkerEvents",
    "read_events",
    "watch_events",
]
