"""Scheduling for naq: one-off jobs at a time (server-side ``@at`` message schedules, no naq
process needed) and recurring schedules (cron or interval, run by :class:`Scheduler`)."""

from __future__ import annotations

from .control import (
    cancel_scheduled_job,
    enqueue_at,
    enqueue_in,
    list_schedules,
    modify_scheduled_job,
    pause_scheduled_job,
    resume_scheduled_job,
    schedule,
)
from .models import Schedule, ScheduleStatus
from .recurring import UNSET
from .scheduler import Scheduler

__all__ = [
    "UNSET",
    "Schedule",
    "ScheduleStatus",
    "Scheduler",
    "cancel_scheduled_job",
    "enqueue_at",
    "enqueue_in",
    "list_schedules",
    "modify_scheduled_job",
    "pause_scheduled_job",
    "resume_scheduled_job",
    "schedule",
]
