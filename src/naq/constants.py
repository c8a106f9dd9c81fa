"""Every stream, subject, consumer and bucket name naq uses: the storage layout in one place."""

from __future__ import annotations

import re

#: Stream holding queued jobs (WorkQueue retention), ``naq.queue.<queue>``. It allows no
#: message schedules and no rollups: those headers act on the server when a message is
#: stored, so anyone who may publish a job could otherwise purge the stream or make the
#: server publish jobs. It sources the due one-off jobs of :data:`SCHEDULES_STREAM`.
JOBS_STREAM = "NAQ_JOBS"
QUEUE_SUBJECT_PREFIX = "naq.queue."
#: Stream holding one-off schedules (``naq.sched.<queue>.<job_id>``) and, for a moment, the
#: jobs they fire (``naq.due.<queue>``), which :data:`JOBS_STREAM` takes over as
#: ``naq.queue.<queue>``.
SCHEDULES_STREAM = "NAQ_SCHEDULES"
SCHEDULE_SUBJECT_PREFIX = "naq.sched."
DUE_SUBJECT_PREFIX = "naq.due."

#: Stream holding dead letters: ``naq.dlq.<queue>``.
DLQ_STREAM = "NAQ_DLQ"
DLQ_SUBJECT_PREFIX = "naq.dlq."

#: Stream of job and worker events: ``naq.events.<queue>.<kind>`` (naq.events), kept in
#: memory for at most an hour and 64 MiB, the oldest dropped first.
EVENTS_STREAM = "NAQ_EVENTS"
EVENTS_SUBJECT_PREFIX = "naq.events."
EVENTS_MAX_AGE = 3600.0
EVENTS_MAX_BYTES = 64 * 1024 * 1024

#: Key-value buckets.
RESULTS_BUCKET = "naq_results"
WORKERS_BUCKET = "naq_workers"
#: Recurring schedules (JSON, one key per schedule id) and the scheduler's leader lock.
SCHEDULES_BUCKET = "naq_schedules"
SCHEDULER_BUCKET = "naq_scheduler"
SCHEDULER_LOCK_KEY = "leader"
#: Completed and failed totals per queue (JSON, one key per queue), added to by every worker.
STATS_BUCKET = "naq_stats"
#: Shared limit definitions (JSON, one key per definition: ``one.<name>``, ``fam.<prefix>``).
LIMITS_BUCKET = "naq_limits"
#: Bucket of the shared limits' state: concurrency slots and rate cells (naq.limiting).
LIMIT_STATE_BUCKET = "naq_limit_state"

#: Durable consumer for queue ``q`` is ``naq-q``.
CONSUMER_PREFIX = "naq-"

#: Headers naq sets on job messages.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_TTL = "Nats-TTL"
#: ``"0"`` makes a write succeed only if the subject has no message yet (create-if-absent).
HEADER_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
#: The subject whose last sequence the header above checks (instead of the message's own).
HEADER_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
HEADER_SIGNATURE = "Naq-Signature"

#: Duplicate window of the jobs stream, seconds.
DUPLICATE_WINDOW = 120.0


#: Priorities above the default, each with a subject and a consumer of its own.
PRIORITY_LEVELS = tuple(range(1, 10))
#: Durable consumer names of priority ``p`` start ``naqp<p>-`` (never ``naq-<queue>``).
PRIORITY_CONSUMER_RE = re.compile(r"naqp([1-9])-([A-Za-z0-9_-]{1,100})")


def queue_subject(queue: str, priority: int = 0) -> str:
    """Subject jobs of ``queue`` with ``priority`` are published on: ``naq.queue.<queue>``
    for the default 0, ``naq.queue.<queue>.<priority>`` above it."""
    if priority:
        return f"{QUEUE_SUBJECT_PREFIX}{queue}.{priority}"
    return f"{QUEUE_SUBJECT_PREFIX}{queue}"


def queue_subjects(queue: str) -> list[str]:
    """Every subject jobs of ``queue`` may wait on, highest priority first."""
    return [queue_subject(queue, p) for p in reversed(PRIORITY_LEVELS)] + [queue_subject(queue)]


def consumer_name(queue: str, priority: int = 0) -> str:
    """Durable consumer name of ``queue`` (of its jobs with ``priority``)."""
    if priority:
        return f"naqp{priority}-{queue}"
    return f"{CONSUMER_PREFIX}{queue}"


def dlq_subject(queue: str) -> str:
    """Dead-letter subject of ``queue``."""
    return f"{DLQ_SUBJECT_PREFIX}{queue}"


def due_subject(queue: str, priority: int = 0) -> str:
    """Subject a one-off schedule of ``queue`` fires its job on (moved to the queue, to the
    subject of the job's priority)."""
    if priority:
        return f"{DUE_SUBJECT_PREFIX}{queue}.{priority}"
    return f"{DUE_SUBJECT_PREFIX}{queue}"


def schedule_subject(queue: str, job_id: str) -> str:
    """Subject of the server-side ``@at`` schedule of one-off job ``job_id`` on ``queue``."""
    return f"{SCHEDULE_SUBJECT_PREFIX}{queue}.{job_id}"
