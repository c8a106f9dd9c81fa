"""Replay protection, with signing on: a signed job id runs at most once while its record
lives.

A signature proves who made a message, not that it is new: anyone who saw a signed job
message could publish it again. So before a signed job runs, the delivery *claims* it: a
conditional write of the job's record storing the stream sequence of the message
(``claimed_seq``). A record with no claim yet (none at all, or ``pending``, ``scheduled``,
``deferred``, or a batch job's implied pending record) is claimed by create or
compare-and-set, so of two copies delivered at the same moment exactly one wins. Later
deliveries of the same message (retries, redeliveries after a crash) carry the same
sequence and go on; any other message with the job's id is a replay, refused without
touching the record. Every record the worker writes for the job afterwards keeps the claim;
requeueing a dead letter clears it (the requeued message claims the job anew).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..batches import split_batch_job_id
from ..errors import WriteConflictError
from ..models import JobEnvelope, JobRecord, JobStatus, record_for
from ..results import ResultStore

#: Statuses of a record that no delivery has claimed yet and one may claim.
CLAIMABLE = frozenset(
    {JobStatus.PENDING.value, JobStatus.SCHEDULED.value, JobStatus.DEFERRED.value}
)
#: Conditional writes tried before giving up (each lost race re-reads the record).
CLAIM_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class Claimed:
    """The delivery may go on. ``record``: the job's record as claimed (``None`` when this
    delivery created it), with the earlier attempts of the same message."""

    record: JobRecord | None


@dataclass(frozen=True, slots=True)
class Replayed:
    """Another message with this job id claimed the job, or it ended already: a replay."""

    reason: str


async def claim(
    results: ResultStore, envelope: JobEnvelope, seq: int, *, size: int, ttl: int
) -> Claimed | Replayed:
    """Claim ``envelope``'s job for the message at stream sequence ``seq`` (``size``: its
    bytes; ``ttl``: its record's). Raises :class:`WriteConflictError` only under endless
    contention, and NATS errors (the caller retries)."""
    fresh = record_for(envelope, JobStatus.PENDING, size=size, claimed_seq=seq)
    # a batch job has no record of its own until it runs: create it in one round trip
    if split_batch_job_id(envelope.id) is not None and await results.create_if_absent(fresh, ttl):
        return Claimed(None)
    for _ in range(CLAIM_ATTEMPTS):
        entry = await results.get_entry(envelope.id)
        if entry is None:
            if await results.create_if_absent(fresh, ttl):
                return Claimed(None)
            continue  # created meanwhile (by its producer, or a copy): read it again
        record, revision = entry
        if record.claimed_seq == seq:
            return Claimed(record)
        if record.claimed_seq is None and record.status in CLAIMABLE:
            record.claimed_seq = seq
            if await results.update(record, revision, ttl):
                return Claimed(record)
            continue
        if record.claimed_seq is None and record.status == JobStatus.CANCELLED.value:
            # cancelled before any message claimed it: not run, recorded cancelled again
            return Claimed(record)
        return Replayed(_why(record, seq))
    raise WriteConflictError(f"could not claim job {envelope.id}: too much contention")


def _why(record: JobRecord, seq: int) -> str:
    if record.claimed_seq is not None:
        by = f"the message at stream sequence {record.claimed_seq} claimed it"
    else:
        by = f"its record is {record.status} without a claim"
    return (
        f"job {record.job_id} runs only once and {by} (this message is at "
        f"sequence {seq}; NAQ_SIGNING_KEY replay protection)"
    )
