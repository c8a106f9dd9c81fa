"""Handing a delivery back at shutdown: a ``nak`` at once, so another worker runs the job,
after counting the hand-back in the job's record (it does not use up an attempt)."""

from __future__ import annotations

import asyncio

from loguru import logger

from ..models import FINAL_STATUS_VALUES, JobEnvelope, JobStatus
from ..results import ResultStore
from ..settings import Settings
from ..transport import nak_body, reply_to
from .decide import decode
from .delivery import Delivery, State


async def hand_back(delivery: Delivery, settings: Settings, results: ResultStore) -> None:
    """Return an unfinished delivery to the queue at once (``nak``), first counting it in
    the job's record so the hand-back does not use up one of the job's attempts."""
    delivery.state = State.SETTLED  # from now on nothing else answers it
    job_id = delivery.job_id
    if job_id is None:
        envelope = decode(delivery.msg, delivery.queue, settings)
        job_id = envelope.id if isinstance(envelope, JobEnvelope) else None
    if job_id is not None:
        try:
            await asyncio.wait_for(_count_hand_back(job_id, settings, results), 2.0)
        except Exception as exc:  # noqa: BLE001 - the nak matters more than the count
            logger.debug("could not count the hand-back of {}: {}", job_id, exc)
    try:
        reply_to(delivery.msg, nak_body())
    except Exception as exc:  # noqa: BLE001 - reconnecting or closed: redelivered anyway
        logger.debug("could not hand back {}: {}", job_id, exc)


async def _count_hand_back(job_id: str, settings: Settings, results: ResultStore) -> None:
    for _ in range(3):
        found = await results.get_entry(job_id)
        if found is None:
            return
        record, revision = found
        if record.status in FINAL_STATUS_VALUES:
            return
        record.handed_back += 1
        record.status = JobStatus.PENDING.value
        if await results.update(record, revision, settings.result_ttl):
            return
