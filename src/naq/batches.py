"""Pending state of ``enqueue_many`` jobs: one batch record instead of one record per job.

A single ``enqueue`` writes a ``pending`` record for its job next to the job message. For a
bulk enqueue that doubles the writes, so ``enqueue_many`` stores one :class:`BatchRecord`
per chunk of up to :data:`BATCH_SIZE` jobs, under ``batch.<batch_id>`` in the results
bucket, and gives its jobs the ids ``<batch_id>-<n>``. Until a worker writes a job's own
record, looking the job up finds no record of its own and answers from the batch record:
``pending``, with its queue, function, options, enqueue time and expiry (so a reader sees
at once that a job not started by its ``expires_at`` expired, see :mod:`naq.expiry`).
"""

from __future__ import annotations

import re

import msgspec

from .models import ENVELOPE_VERSION, JobEnvelope, JobRecord, JobStatus

#: Jobs described by one batch record (keeps each record well under NATS' 1 MB limit).
BATCH_SIZE = 10_000
_BATCH_JOB_ID = re.compile(r"^([0-9a-f]{32})-(0|[1-9][0-9]{0,8})$")  # one spelling per job


class BatchRecord(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What every job of one ``enqueue_many`` chunk looks like before it runs."""

    v: int = ENVELOPE_VERSION
    batch_id: str
    queue_name: str
    count: int
    enqueued_at: float
    functions: list[str]
    #: per job, its function's index in ``functions``; empty when there is one function
    calls: list[int] = msgspec.field(default_factory=list)
    max_retries: int = 0
    schedule_id: str | None = None
    #: the jobs' shared ``expires_at`` (epoch seconds), ``None``: they never expire
    expires_at: float | None = None

    @classmethod
    def of(cls, batch_id: str, envelopes: list[JobEnvelope]) -> BatchRecord:
        """The batch record of ``envelopes`` (ids ``<batch_id>-0`` ... in order)."""
        first = envelopes[0]
        index: dict[str, int] = {}
        calls = [index.setdefault(e.fn, len(index)) for e in envelopes]
        return cls(
            batch_id=batch_id,
            queue_name=first.queue,
            count=len(envelopes),
            enqueued_at=first.enqueued_at,
            functions=list(index),
            calls=calls if len(index) > 1 else [],
            max_retries=first.max_retries,
            schedule_id=first.schedule_id,
            expires_at=first.expires_at,
        )

    def pending_record(self, job_id: str, n: int) -> JobRecord | None:
        """The ``pending`` record of job ``n`` of this batch (``None`` if out of range)."""
        if not 0 <= n < self.count:
            return None
        function = self.functions[self.calls[n] if self.calls else 0]
        return JobRecord(
            job_id=job_id,
            status=JobStatus.PENDING.value,
            queue_name=self.queue_name,
            function=function,
            enqueued_at=self.enqueued_at,
            max_retries=self.max_retries,
            schedule_id=self.schedule_id,
            expires_at=self.expires_at,
        )


def batch_job_id(batch_id: str, n: int) -> str:
    """The id of job ``n`` of a batch."""
    return f"{batch_id}-{n}"


def split_batch_job_id(job_id: str) -> tuple[str, int] | None:
    """``(batch_id, n)`` for an id shaped like a batch job's, else ``None``."""
    found = _BATCH_JOB_ID.fullmatch(job_id)
    return (found.group(1), int(found.group(2))) if found else None


def batch_key(batch_id: str) -> str:
    """The results-bucket key of a batch record (a job id can never contain a dot)."""
    return f"batch.{batch_id}"


_batch_decoder = msgspec.json.Decoder(BatchRecord)


def decode_batch(data: bytes) -> BatchRecord:
    """Parse a batch record."""
    return _batch_decoder.decode(data)
