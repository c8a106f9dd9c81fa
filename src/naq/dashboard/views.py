"""What the pages read beyond :class:`~naq.dashboard.backend.Backend`'s own methods: the
jobs waiting in a queue (and so a waiting job's arguments), a job's parents, the recent
events, and the page-friendly forms (indented JSON text) of what the Backend returns.
Candidates to move into ``backend.py``: :func:`waiting_jobs` and :func:`recent_events`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from .. import constants as c
from ..errors import ConfigurationError, NaqException
from ..events import Event, read_events
from ..info import JobInfo
from ..models import JobEnvelope, decode_envelope
from ..transport import streams
from ..utctime import from_epoch
from .backend import Backend
from .models import JobDetail

#: Kinds of event the overview lists as recent failures.
FAILURE_KINDS = ("failed", "dead")


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON text (escaped by the templates, never marked safe)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A job message still in its queue's stream (waiting, or delivered and unacknowledged)."""

    job_id: str
    function: str
    priority: int
    enqueued_at: datetime | None
    arguments: str


def _arguments_text(envelope: JobEnvelope) -> str:
    if envelope.pickled is not None:
        return "(pickled arguments, not shown)"
    return pretty_json({"args": envelope.args, "kwargs": envelope.kwargs})


def _waiting_job(data: bytes) -> WaitingJob | None:
    try:
        envelope = decode_envelope(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return WaitingJob(
        job_id=envelope.id,
        function=envelope.fn,
        priority=envelope.priority,
        enqueued_at=from_epoch(envelope.enqueued_at),
        arguments=_arguments_text(envelope),
    )


async def waiting_jobs(backend: Backend, queue: str, limit: int = 50) -> list[WaitingJob]:
    """Up to ``limit`` job messages of ``queue``, highest priority first, oldest first."""
    await backend.conn.ensure_jobs_stream()
    found: list[WaitingJob] = []
    for subject in c.queue_subjects(queue):
        seq = 1
        while len(found) < limit:
            msg = await streams.get_message(
                backend.conn, c.JOBS_STREAM, subject=subject, next_from=seq
            )
            if msg is None:
                break
            seq = msg.seq + 1
            job = _waiting_job(msg.data)
            if job is not None:
                found.append(job)
    return found


@dataclass(frozen=True, slots=True)
class JobView:
    """Everything the job page shows: the API's :class:`~.models.JobDetail`, its call and
    result as indented JSON text, and the jobs it depends on."""

    detail: JobDetail
    arguments: str | None
    result: str | None
    parents: list[JobInfo | str] = field(default_factory=list)

    @property
    def info(self) -> JobInfo:
        """The job."""
        return self.detail.job


async def _waiting_arguments(backend: Backend, info: JobInfo) -> str | None:
    """A waiting job's arguments, from its message in its queue."""
    if info.status.value not in ("pending", "running"):
        return None
    for job in await waiting_jobs(backend, info.queue_name, limit=500):
        if job.job_id == info.job_id:
            return job.arguments
    return None


async def job_view(backend: Backend, job_id: str) -> JobView:
    """The job page's data (:class:`~naq.JobNotFoundError` if unknown)."""
    detail = await backend.job_detail(job_id)
    info = detail.job
    if detail.args is not None or detail.kwargs is not None:
        arguments: str | None = pretty_json({"args": detail.args, "kwargs": detail.kwargs})
    else:
        arguments = await _waiting_arguments(backend, info)
    parents: list[JobInfo | str] = []
    for parent in info.depends_on:
        try:
            parents.append(await backend.job(parent))
        except NaqException:
            parents.append(parent)
    result = None if detail.result is None else pretty_json(detail.result)
    return JobView(detail=detail, arguments=arguments, result=result, parents=parents)


async def dead_letter_raw(backend: Backend, entry_id: int) -> str:
    """One dead letter as indented JSON (its payload parsed when it is JSON)."""
    data = (await backend.dead_letter(entry_id)).model_dump(mode="json")
    if data.get("payload_encoding") == "utf-8":
        try:
            data["payload"] = json.loads(data["payload"])
        except ValueError:
            pass
    return pretty_json(data)


async def schedule_action(backend: Backend, schedule_id: str, action: str) -> None:
    """``pause``, ``resume``, ``cancel`` or ``run`` (now) one schedule."""
    actions = {
        "pause": backend.pause_schedule,
        "resume": backend.resume_schedule,
        "cancel": backend.cancel_schedule,
        "run": backend.run_schedule_now,
    }
    act = actions.get(action)
    if act is None:
        raise ConfigurationError(f"unknown schedule action {action!r}: pause, resume, cancel, run")
    await act(schedule_id)


# -- events ----------------------------------------------------------------------------


async def recent_events(
    backend: Backend,
    *,
    queue: str | None = None,
    kinds: tuple[str, ...] | None = None,
    last: int = 200,
    keep: int = 20,
) -> list[Event]:
    """The newest events (of ``kinds``, of ``queue``) among the last ``last`` messages,
    newest first, at most ``keep``."""
    found = [
        event
        async for event in read_events(
            backend.conn, queue=queue, kinds=kinds, last=last, follow=False
        )
    ]
    return list(reversed(found))[:keep]
