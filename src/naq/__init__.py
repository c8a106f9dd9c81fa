"""naq: the NATS Asynchronous Queue.

Enqueue from async or sync code, run sync and async functions in workers, on NATS JetStream.
Nothing connects at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import loguru

from .__about__ import __version__
from .api import (
    cancel_job,
    cancel_scheduled_job,
    close,
    delete_limit,
    enqueue,
    enqueue_at,
    enqueue_in,
    enqueue_many,
    fetch_job_result,
    get_job_info,
    get_job_status,
    list_dead_letters,
    list_limits,
    list_queues,
    list_schedules,
    list_workers,
    modify_scheduled_job,
    pause_queue,
    pause_scheduled_job,
    purge_dead_letters,
    purge_queue,
    requeue_dead_letter,
    requeue_dead_letters,
    resume_queue,
    resume_scheduled_job,
    schedule,
    set_limit,
)
from .context import JobContext, current_job
from .deadletter import BulkRequeue, DeadLetter
from .errors import (
    ConfigurationError,
    FunctionNotAllowedError,
    FunctionNotFoundError,
    JobCancelledError,
    JobExecutionError,
    JobNotFoundError,
    JobTimeoutError,
    LoginRefusedError,
    NaqConnectionError,
    NaqError,
    NaqException,
    NaqTimeoutError,
    PayloadTooLargeError,
    PublishNotConfirmedError,
    SerializationError,
    ServerError,
    WriteConflictError,
)
from .events import Event, EventKind, watch_events
from .functions import task
from .hooks import (
    Hooks,
    JobRun,
    Middleware,
    Outcome,
    add_hook,
    add_middleware,
    remove_hook,
)
from .info import JobInfo, QueueInfo, WorkerInfo
from .job import Job
from .limits import LimitSpec
from .log import log_to_stdlib, setup_logging
from .models import JOB_STATUS, JobStatus
from .queue import Queue
from .scheduling import Schedule, Scheduler
from .sync import (
    SyncClient,
    cancel_job_sync,
    cancel_scheduled_job_sync,
    close_sync_connections,
    delete_limit_sync,
    enqueue_at_sync,
    enqueue_in_sync,
    enqueue_many_sync,
    enqueue_sync,
    fetch_job_result_sync,
    get_job_info_sync,
    get_job_status_sync,
    list_dead_letters_sync,
    list_limits_sync,
    list_queues_sync,
    list_schedules_sync,
    list_workers_sync,
    modify_scheduled_job_sync,
    pause_queue_sync,
    pause_scheduled_job_sync,
    purge_dead_letters_sync,
    purge_queue_sync,
    requeue_dead_letter_sync,
    requeue_dead_letters_sync,
    resume_queue_sync,
    resume_scheduled_job_sync,
    run_sync,
    schedule_sync,
    set_limit_sync,
)
from .worker import Worker

if not TYPE_CHECKING:  # type checkers keep refusing names naq does not have

    def __getattr__(name: str) -> object:
        """The original naq's names: naq's object where naq has it under another name, else
        a stand-in raising, when called, a naq error saying what to write instead (see
        :mod:`naq.original_api`)."""
        from .original_api import lookup

        return lookup(name)


# loguru's convention for libraries: naq's records are off until the host enables them
# (naq.setup_logging(), naq.log_to_stdlib(), or logger.enable("naq"))
loguru.logger.disable("naq")

__all__ = [
    "JOB_STATUS",
    "BulkRequeue",
    "ConfigurationError",
    "DeadLetter",
    "Event",
    "EventKind",
    "FunctionNotAllowedError",
    "FunctionNotFoundError",
    "Hooks",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobExecutionError",
    "JobInfo",
    "JobNotFoundError",
    "JobRun",
    "JobStatus",
    "JobTimeoutError",
    "LimitSpec",
    "LoginRefusedError",
    "Middleware",
    "NaqConnectionError",
    "NaqError",
    "NaqException",
    "NaqTimeoutError",
    "Outcome",
    "PayloadTooLargeError",
    "PublishNotConfirmedError",
    "Queue",
    "QueueInfo",
    "Schedule",
    "Scheduler",
    "SerializationError",
    "ServerError",
    "SyncClient",
    "Worker",
    "WorkerInfo",
    "WriteConflictError",
    "__version__",
    "add_hook",
    "add_middleware",
    "cancel_job",
    "cancel_job_sync",
    "cancel_scheduled_job",
    "cancel_scheduled_job_sync",
    "close",
    "close_sync_connections",
    "current_job",
    "delete_limit",
    "delete_limit_sync",
    "enqueue",
    "enqueue_at",
    "enqueue_at_sync",
    "enqueue_in",
    "enqueue_in_sync",
    "enqueue_many",
    "enqueue_many_sync",
    "enqueue_sync",
    "fetch_job_result",
    "fetch_job_result_sync",
    "get_job_info",
    "get_job_info_sync",
    "get_job_status",
    "get_job_status_sync",
    "list_dead_letters",
    "list_dead_letters_sync",
    "list_limits",
    "list_limits_sync",
    "list_queues",
    "list_queues_sync",
    "list_schedules",
    "list_schedules_sync",
    "list_workers",
    "list_workers_sync",
    "log_to_stdlib",
    "modify_scheduled_job",
    "modify_scheduled_job_sync",
    "pause_queue",
    "pause_queue_sync",
    "pause_scheduled_job",
    "pause_scheduled_job_sync",
    "purge_dead_letters",
    "purge_dead_letters_sync",
    "purge_queue",
    "purge_queue_sync",
    "remove_hook",
    "requeue_dead_letter",
    "requeue_dead_letter_sync",
    "requeue_dead_letters",
    "requeue_dead_letters_sync",
    "resume_queue",
    "resume_queue_sync",
    "resume_scheduled_job",
    "resume_scheduled_job_sync",
    "run_sync",
    "schedule",
    "schedule_sync",
    "set_limit",
    "set_limit_sync",
    "setup_logging",
    "task",
    "watch_events",
]
