"""``cancel_job``: stop a job wherever it is.

* ``deferred`` (waiting on dependencies): its record becomes ``cancelled`` by
  compare-and-set; it is never released, and the jobs depending on it are cancelled too.
* ``scheduled``: its ``@at`` schedule is removed (see :mod:`naq.scheduling.oneoff`).
* ``pending``, ``retrying`` or ``running``: a cancel request, the key ``cancel.<id>`` in the
  results bucket, tells every worker. Workers hear of each request the moment it is stored
  (a core subscription on those keys, re-read after every reconnect): the worker running the
  job cancels an async job's task, or sets ``current_job().cancelled`` for a sync job and
  records it ``cancelled`` when it returns; a worker that receives the job's message later
  acknowledges it without running it. The request is removed once a worker acted on it,
  and expires with the job's record otherwise.

A job that has not started by its ``expires_at`` is cancelled already (expired, see
:mod:`naq.expiry`) even if no worker recorded it so yet: ``cancel_job`` changes nothing
then and returns False, as for any finished job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from loguru import logger

from . import constants as c
from .dependencies import CAS_ATTEMPTS, Dependencies
from .errors import JobNotFoundError, WriteConflictError
from .expiry import as_read
from .models import FINAL_STATUS_VALUES, JobRecord, JobStatus, mark_cancelled
from .results import ResultStore
from .transport import Connection, kv

#: Key prefix of cancel requests in the results bucket (a job id never contains a dot).
CANCEL_PREFIX = "cancel."
#: Error type of a job cancelled by ``cancel_job``.
CANCELLED_BY_REQUEST = "naq:cancelled"
CANCEL_REASON = "cancelled by cancel_job"
_RUNNABLE = frozenset(
    status.value for status in (JobStatus.PENDING, JobStatus.RETRYING, JobStatus.RUNNING)
)


def cancel_key(job_id: str) -> str:
    """The results-bucket key of the cancel request of ``job_id``."""
    return CANCEL_PREFIX + job_id


def cancel_requests_subject() -> str:
    """The subjects every cancel request is stored on (a filter)."""
    return kv.subject_prefix(c.RESULTS_BUCKET) + CANCEL_PREFIX + "*"


def job_id_of(subject: str) -> str:
    """The job id a cancel request's subject names."""
    return subject.rsplit(".", 1)[-1]


async def remove_request(conn: Connection, job_id: str) -> None:
    """Remove the cancel request of ``job_id`` (a worker acted on it); every worker hears of
    it and forgets the id."""
    await kv.purge(conn, c.RESULTS_BUCKET, cancel_key(job_id), ttl=60)


async def cancel_job(
    conn: Connection,
    deps: Dependencies,
    results: ResultStore,
    job_id: str,
    *,
    default_ttl: int,
    cancel_scheduled: Callable[[str], Awaitable[bool]],
    on_unreached: Callable[[JobRecord], None] | None = None,
) -> bool:
    """Cancel ``job_id`` (see the module docstring). True if it was cancelled; False if it
    had finished already (nothing changes then). Unknown -> :class:`JobNotFoundError`.
    ``on_unreached`` is told of a scheduled or deferred job cancelled before any worker
    could see it (a worker reports the others when it skips or stops them)."""
    for _ in range(CAS_ATTEMPTS):
        entry = await results.get_entry(job_id)
        if entry is None:
            raise JobNotFoundError(f"job {job_id} not found (unknown, or its record expired)")
        record, revision = entry
        record = as_read(record) or record  # a job that expired reads as cancelled
        status = record.status
        ttl = int(record.result_ttl or default_ttl)
        if status in FINAL_STATUS_VALUES:
            logger.debug("job {} is {} already; nothing to cancel", job_id, status)
            return False
        if status == JobStatus.SCHEDULED.value and await cancel_scheduled(job_id):
            # its schedule is gone and its record says cancelled
            if on_unreached is not None:
                on_unreached(record)
        elif status == JobStatus.DEFERRED.value:
            mark_cancelled(record, CANCELLED_BY_REQUEST, CANCEL_REASON)
            if not await results.update(record, revision, ttl):
                continue  # released or changed meanwhile: look again
            await deps.settled(job_id, record.depends_on)
            if on_unreached is not None:
                on_unreached(record)
        elif status in _RUNNABLE or status == JobStatus.SCHEDULED.value:
            # (a scheduled job whose schedule fired already is a queued job by now)
            await kv.put(conn, c.RESULTS_BUCKET, cancel_key(job_id), b"1", ttl=ttl)
            if status != JobStatus.RUNNING.value:
                # queued or waiting for a retry: it is cancelled now (a worker holding it
                # already stops it and writes the same); a running job's worker records it
                mark_cancelled(record, CANCELLED_BY_REQUEST, CANCEL_REASON)
                if not await results.update(record, revision, ttl):
                    continue
        else:
            raise WriteConflictError(f"job {job_id} has an unknown status {status!r}")
        if status != JobStatus.RUNNING.value:
            await deps.finished(job_id, JobStatus.CANCELLED.value)
        logger.info("job {} ({}) cancelled", job_id, status)
        return True
    raise WriteConflictError(f"could not cancel job {job_id}: its record kept changing")
