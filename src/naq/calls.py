"""Turning a call plus job options into a :class:`~naq.Job` and its envelope: what
``enqueue`` does before anything is sent, shared by scheduled and recurring jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .job import Job, JobOptions, new_job_id
from .models import JobEnvelope
from .serialization import build_envelope

if TYPE_CHECKING:
    from .queue import Queue


def prepare_call(
    queue: Queue,
    func: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: JobOptions,
    *,
    job_id: str | None = None,
    schedule_id: str | None = None,
) -> tuple[Job, JobEnvelope]:
    """Validate and serialize the call into a :class:`Job` and its envelope (``enqueue`` and
    the scheduled variants share this); raises before anything is stored."""
    the_id = job_id or options.job_id or new_job_id()
    envelope = build_envelope(
        func,
        args,
        kwargs,
        job_id=the_id,
        queue=queue.name,
        options=options,
        settings=queue.settings,
        schedule_id=schedule_id,
    )
    job = Job(
        job_id=the_id,
        function=envelope.fn,
        args=args,
        kwargs=kwargs,
        queue_name=queue.name,
        options=options,
        enqueued_at=envelope.enqueued_at,
        queue=queue,
    )
    return job, envelope


def result_ttl(envelope: JobEnvelope, default: int) -> int:
    """Seconds a job's record is kept after it finishes."""
    return int(envelope.result_ttl or default)
