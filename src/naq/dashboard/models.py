"""The JSON shapes of the dashboard's API (``/api/...``), beside naq's own info dataclasses
(:class:`~naq.info.QueueInfo`, :class:`~naq.info.WorkerInfo`, :class:`~naq.info.JobInfo`,
:class:`~naq.Schedule`), which the API returns as they are. Typed, so
``/api/openapi.json`` describes every response."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..info import JobInfo, QueueInfo, WorkerInfo


class Health(BaseModel):
    """Whether the dashboard reaches NATS now."""

    connected: bool


class Problem(BaseModel):
    """An error answer: naq's own message."""

    detail: str


class DeadLetterSummary(BaseModel):
    """One dead letter, as listed (no payload)."""

    id: int
    reason: str
    kind: str
    queue: str
    job_id: str | None
    failed_at: datetime | None


class DeadLetterView(DeadLetterSummary):
    """One dead letter in full: its payload as text when it is UTF-8, else base64, and the
    headers the message had on its queue."""

    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    headers: dict[str, str]


class Throughput(BaseModel):
    """One queue's jobs finished during the last minute, as of ``at`` (a point of the
    throughput plot)."""

    queue: str
    at: datetime
    completed_last_minute: int
    failed_last_minute: int


class Overview(BaseModel):
    """The overview page: queues, workers, the newest dead letters, throughput now."""

    queues: list[QueueInfo]
    workers: list[WorkerInfo]
    recent_failures: list[DeadLetterSummary]
    throughput: list[Throughput]


class RecentJob(BaseModel):
    """A job of a queue as its latest event tells (the events stream)."""

    job_id: str
    kind: str = Field(description="the latest event: enqueued, started, completed, failed...")
    at: datetime
    function: str | None = None
    error: str | None = None


class QueueDetail(BaseModel):
    """One queue: its counts, the jobs its workers run now and, when workers record events
    (``NAQ_EVENTS=1``), its recent jobs."""

    queue: QueueInfo
    running_jobs: list[str]
    events: bool = Field(description="whether the events stream holds events (events on)")
    events_note: str | None = None
    recent_jobs: list[RecentJob]


class JobDetail(BaseModel):
    """One job: what naq knows of it, its call and result as stored (JSON, naq's wire form
    for values JSON cannot hold), and the jobs that depend on it."""

    job: JobInfo
    args: list[Any] | None = Field(
        default=None, description="the call's arguments, while naq still holds its message"
    )
    kwargs: dict[str, Any] | None = None
    arguments_note: str | None = Field(
        default=None, description="why the arguments are not shown, when they are not"
    )
    result: Any = None
    traceback: str | None = None
    dependants: list[str]


class LimitKeyUsage(BaseModel):
    """Use now of one concrete limit (``user:42``): concurrency slots held and starts
    counted against its rate."""

    key: str
    running: int
    rate_used: int


class LimitView(BaseModel):
    """One limit definition and its use now."""

    name: str
    concurrency: int | None
    rate: str | None
    usage: list[LimitKeyUsage]


class LimitChange(BaseModel):
    """A limit's new definition: a concurrency, a rate (``"100/s"``) or both."""

    concurrency: int | None = None
    rate: str | None = None


class Done(BaseModel):
    """An action that was carried out."""

    ok: bool = True
    detail: str


class Cancelled(BaseModel):
    """``cancelled``: False when the job had finished already (nothing changed)."""

    job_id: str
    cancelled: bool


class Requeued(BaseModel):
    """A dead letter requeued as job ``job_id`` (``None``: its payload was undecodable)."""

    id: int
    job_id: str | None


class Skipped(BaseModel):
    """A dead letter left in place, and why."""

    id: int
    reason: str


class BulkRequeued(BaseModel):
    """What a bulk requeue did."""

    requeued: list[Requeued]
    skipped: list[Skipped]


class SearchHit(BaseModel):
    """Where a search leads: the job's API and page addresses."""

    job_id: str
    api: str
    page: str
