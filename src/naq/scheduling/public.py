"""The scheduling names ``naq`` exports: the module-level async helpers of :mod:`naq.api` and
their ``*_sync`` twins of :mod:`naq.sync`, gathered in one import."""

from __future__ import annotations

from ..api import (
    cancel_scheduled_job,
    enqueue_at,
    enqueue_in,
    list_schedules,
    modify_scheduled_job,
    pause_scheduled_job,
    resume_scheduled_job,
    schedule,
)
from ..sync import (
    cancel_scheduled_job_sync,
    enqueue_at_sync,
    enqueue_in_sync,
    list_schedules_sync,
    modify_scheduled_job_sync,
    pause_scheduled_job_sync,
    resume_scheduled_job_sync,
    schedule_sync,
)

__all__ = [
    "cancel_scheduled_job",
    "cancel_scheduled_job_sync",
    "enqueue_at",
    "enqueue_at_sync",
    "enqueue_in",
    "enqueue_in_sync",
    "list_schedules",
    "list_schedules_sync",
    "modify_scheduled_job",
    "modify_scheduled_job_sync",
    "pause_scheduled_job",
    "pause_scheduled_job_sync",
    "resume_scheduled_job",
    "resume_scheduled_job_sync",
    "schedule",
    "schedule_sync",
]
