"""naq: the NATS Asynchronous Queue.

Enqueue from async or sync code, run sync and async functions in workers, on NATS JetStream.
Nothing connects at import time.
"""

from __future__ import annotations

import loguru

from .__about__ import __version__
from .api import (
    cancel_job,
    cancel_scheduled_job,
    close,
    enqueue,
    enqueue_at,
    enqueue_in,
    enqueue_many,
    fetch_job_result,
    get_job_info,
    get_job_status,
    list_dead_letters,
    list_queues,
    list_schedules,
    list_workers,
    modify_scheduled_job,
    pause_scheduled_job,
    purge_dead_letters,
    purge_queue,
    requeue_dead_letter,
    resume_scheduled_job,
    schedule,
)
from .context import JobContext, current_job
from .deadletter import DeadLetter
from .errors import (
    ConfigurationError,
    FunctionNotAllowedError,
    FunctionNotFoundError,
    JobCancelledError,
    JobExecutionError,
    JobNotFoundError,
    JobTimeoutError,
    NaqConnectionError,
    NaqError,
    NaqException,
    NaqTimeoutError,
    PayloadTooLargeError,
    SerializationError,
    ServerError,
    WriteConflictError,
)
from .functions import task
from .job import Job, JobInfo, QueueInfo, WorkerInfo
from .log import log_to_stdlib, setup_logging
from .models import JOB_STATUS, JobStatus
from .queue import Queue
from .scheduling import Schedule, Scheduler
from .sync import (
    SyncClient,
    cancel_job_sync,
    cancel_scheduled_job_sync,
    enqueue_at_sync,
    enqueue_in_sync,
    enqueue_many_sync,
    enqueue_sync,
    fetch_job_result_sync,
    get_job_info_sync,
    get_job_status_sync,
    list_dead_letters_sync,
    list_queues_sync,
    list_schedules_sync,
    list_workers_sync,
    modify_scheduled_job_sync,
    pause_scheduled_job_sync,
    purge_dead_letters_sync,
    purge_queue_sync,
    requeue_dead_letter_sync,
    resume_scheduled_job_sync,
    run_sync,
    schedule_sync,
)
from .worker import Worker

# loguru's convention for libraries: naq's records are off until the host enables them
# (naq.setup_logging(), naq.log_to_stdlib(), or logger.enable("naq"))
loguru.logger.disable("naq")

__all__ = [
    "JOB_STATUS",
    "ConfigurationError",
    "DeadLetter",
    "FunctionNotAllowedError",
    "FunctionNotFoundError",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobExecutionError",
    "JobInfo",
    "JobNotFoundError",
    "JobStatus",
    "JobTimeoutError",
    "NaqConnectionError",
    "NaqError",
    "NaqException",
    "NaqTimeoutError",
    "PayloadTooLargeError",
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
    "cancel_job",
    "cancel_job_sync",
    "cancel_scheduled_job",
    "cancel_scheduled_job_sync",
    "close",
    "current_job",
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
    "list_queues",
    "list_queues_sync",
    "list_schedules",
    "list_schedules_sync",
    "list_workers",
    "list_workers_sync",
    "log_to_stdlib",
    "modify_scheduled_job",
    "modify_scheduled_job_sync",
    "pause_scheduled_job",
    "pause_scheduled_job_sync",
    "purge_dead_letters",
    "purge_dead_letters_sync",
    "purge_queue",
    "purge_queue_sync",
    "requeue_dead_letter",
    "requeue_dead_letter_sync",
    "resume_scheduled_job",
    "resume_scheduled_job_sync",
    "run_sync",
    "schedule",
    "schedule_sync",
    "setup_logging",
    "task",
]
