"""Enqueueing one run of a recurring schedule.

A run's job id is derived from the schedule id and the run's scheduled time
(``nightly-20260102T030000Z``), and it is published with that id as ``Nats-Msg-Id``. So a
run published twice (leader hand-over, retry, recovery) is stored once by the stream inside
its duplicate window, and after it the results bucket's ``create`` refuses the same id."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from loguru import logger

from .. import constants as c
from ..calls import result_ttl
from ..events import EventPublisher, enqueued_event
from ..messages import job_headers
from ..models import JobEnvelope, JobStatus, encode
from ..results import ResultStore, absent_headers, record_subject
from ..settings import Settings
from ..transport import Connection
from .models import ScheduleRecord
from .records import pending_run_record


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("run record not created: {}", future.exception())


def run_job_id(schedule_id: str, run_at: float) -> str:
    """The job id of ``schedule_id``'s run scheduled at ``run_at`` (UTC, ms resolution)."""
    ms = round(run_at * 1000)
    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y%m%dT%H%M%S")
    frac = ms % 1000
    return f"{schedule_id}-{stamp}{frac:03d}Z" if frac else f"{schedule_id}-{stamp}Z"


def run_envelope(record: ScheduleRecord, run_at: float, now: float) -> JobEnvelope:
    """The job message of one run: the template with its own id, time and schedule id, and
    an expiry ``expires_after`` seconds after ``run_at`` if the schedule has one."""
    expires_at = record.template.expires_at  # an older record's template may carry one
    if record.expires_after is not None:
        expires_at = run_at + record.expires_after
    return msgspec.structs.replace(
        record.template,
        id=run_job_id(record.schedule_id, run_at),
        queue=record.queue,
        enqueued_at=now,
        schedule_id=record.schedule_id,
        expires_at=expires_at,
    )


class RunPublisher:
    """Publishes runs for a scheduler (borrows its connection)."""

    def __init__(self, conn: Connection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.results = ResultStore(conn)
        #: ``enqueued`` events of the runs, when events are on (``NAQ_EVENTS``)
        self.events = EventPublisher(conn) if settings.events else None

    def _announce(self, envelope: JobEnvelope) -> None:
        """The run's ``enqueued`` event, sent before its job (on the same connection)."""
        if self.events is not None:
            self.events.emit(enqueued_event(envelope.queue, envelope.id, envelope.fn))
            self.events.flush()

    async def publish(self, record: ScheduleRecord, run_at: float, *, careful: bool) -> str:
        """Store the run's record and publish its job; returns the job id.

        ``careful`` (recovery, or a publish long after its claim): create the record first
        and publish only if this call created it or it is still pending and recent.
        """
        now = time.time()
        envelope = run_envelope(record, run_at, now)
        payload = encode(envelope)
        ttl = result_ttl(envelope, self.settings.result_ttl)
        job_record = pending_run_record(envelope)
        if not careful:
            # The record is created without waiting for it: if the worker wrote its own
            # record first, this create fails harmlessly (it never overwrites).
            await self._create_record_nowait(envelope.id, encode(job_record), ttl)
            self._announce(envelope)
            await self._send(envelope.id, c.queue_subject(record.queue, envelope.priority), payload)
            return envelope.id
        existing = await self.results.create(job_record, ttl)
        if existing is None or (
            existing.status == JobStatus.PENDING.value
            and existing.enqueued_at is not None
            and now - existing.enqueued_at < c.DUPLICATE_WINDOW - 10
        ):
            self._announce(envelope)
            await self._send(envelope.id, c.queue_subject(record.queue, envelope.priority), payload)
        return envelope.id

    async def send_nowait(
        self, record: ScheduleRecord, run_at: float
    ) -> tuple[str, asyncio.Future[int]]:
        """Create the run's record (not awaited) and publish its job; returns the job id and
        the future of the job's ack (pipelining many runs)."""
        envelope = run_envelope(record, run_at, time.time())
        payload = encode(envelope)
        ttl = result_ttl(envelope, self.settings.result_ttl)
        await self._create_record_nowait(envelope.id, encode(pending_run_record(envelope)), ttl)
        self._announce(envelope)
        subject = c.queue_subject(record.queue, envelope.priority)
        future = await self.conn.send(
            subject,
            payload,
            job_headers(self.settings, envelope.id, payload, subject=subject),
        )
        return envelope.id, future

    async def _create_record_nowait(self, job_id: str, payload: bytes, ttl: int) -> None:
        future = await self.conn.send(record_subject(job_id), payload, absent_headers(ttl))
        future.add_done_callback(_ignore_outcome)

    async def _send(self, job_id: str, subject: str, payload: bytes) -> None:
        await self.conn.publish_idempotent(
            subject,
            payload,
            job_headers(self.settings, job_id, payload, subject=subject),
            f"run {job_id}",
        )
