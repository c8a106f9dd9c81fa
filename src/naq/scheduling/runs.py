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
import nats.errors
import nats.js.errors
from loguru import logger

from .. import constants as c
from ..connection import Connection
from ..errors import NaqConnectionError
from ..models import JobEnvelope, JobStatus, encode
from ..results import ResultStore, record_subject
from ..serialization import sign
from ..settings import Settings
from .calls import result_ttl
from .models import ScheduleRecord
from .pipeline import pipe_for
from .records import pending_run_record

_PUBLISH_TIMEOUT = 10.0
_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


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
    """The job message of one run: the template with its own id, time and schedule id."""
    return msgspec.structs.replace(
        record.template,
        id=run_job_id(record.schedule_id, run_at),
        queue=record.queue,
        enqueued_at=now,
        schedule_id=record.schedule_id,
    )


class RunPublisher:
    """Publishes runs for a scheduler (borrows its connection)."""

    def __init__(self, conn: Connection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.results = ResultStore(conn)

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
            await self._send(envelope.id, record.queue, payload)
            return envelope.id
        existing = await self.results.create(job_record, ttl)
        if existing is None or (
            existing.status == JobStatus.PENDING.value
            and existing.enqueued_at is not None
            and now - existing.enqueued_at < c.DUPLICATE_WINDOW - 10
        ):
            await self._send(envelope.id, record.queue, payload)
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
        future = await pipe_for(self.conn).publish(
            c.queue_subject(record.queue), payload, self._headers(envelope.id, payload)
        )
        return envelope.id, future

    def _headers(self, job_id: str, payload: bytes) -> dict[str, str]:
        headers = {c.HEADER_MSG_ID: job_id}
        if self.settings.signing_key:
            headers[c.HEADER_SIGNATURE] = sign(payload, self.settings.signing_key)
        return headers

    async def _create_record_nowait(self, job_id: str, payload: bytes, ttl: int) -> None:
        headers = {_EXPECTED_LAST_SUBJECT_SEQ: "0", c.HEADER_TTL: str(int(ttl))}
        future = await pipe_for(self.conn).publish(record_subject(job_id), payload, headers)
        future.add_done_callback(_ignore_outcome)

    async def _send(self, job_id: str, queue: str, payload: bytes) -> None:
        headers = self._headers(job_id, payload)
        subject = c.queue_subject(queue)
        for attempt in range(3):
            try:
                await self.conn.js.publish(
                    subject, payload, headers=headers, timeout=_PUBLISH_TIMEOUT
                )
                return
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError):
                if attempt == 2:
                    raise NaqConnectionError(
                        f"NATS did not confirm run {job_id}; it may not be stored"
                    ) from None
                await asyncio.sleep(0.2 * (attempt + 1))
