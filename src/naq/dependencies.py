"""Job dependencies (``depends_on``): deferred jobs, the edges to the jobs they wait for,
and their release or cancellation. Event-driven, compare-and-set only, no locks and no
polling.

Keys in the results bucket, next to the job records (``<id>``; a job id has no dot):

* ``deps.<P>``, the marker "someone depends on P". A worker stores P's final record on the
  condition that this subject holds no message (``Nats-Expected-Last-Subject-Sequence: 0``
  with ``...-Subject``): nobody depends on most jobs, so the write simply goes through and
  costs nothing more than before. Refused, it means P has dependants.
* ``deps.<P>.<C>``, the edge "C depends on P": one key per edge, so ten thousand children
  of one parent never contend for one key.

A deferred job's record holds ``waiting_on`` (its dependencies not yet done) and ``held``,
its message. Applying "P finished" to C is one compare-and-set of C's record: P leaves
``waiting_on``; the write that empties it also sets the status the message gets (pending or
scheduled), and only its writer publishes the message (with the job's ``Nats-Msg-Id``, so
a repeat is dropped). Two workers finishing C's last two dependencies at the same instant
both try; one write wins, the other re-reads and finds nothing left to do: released once.
A dependency that failed for good (failed, dead, cancelled) cancels C instead, unless C
was enqueued with ``allow_failure=True``, and the cancellation goes on down C's own edges.

Nothing is missed between producer and worker: the producer stores the marker and the edge
*before* reading P's record, the worker stores P's final record *before* listing P's edges.
Whichever comes second sees the other's write (one stream orders them), so at least one of
them applies P's outcome to C, and applying it twice changes nothing.

A crash is covered by redelivery: a worker acks P only after every child was handled; if it
dies first, the next delivery of P finds P's final record, sees the marker, and goes over
the edges again (a child released but perhaps not published is published again while the
duplicate window still drops a repeat).

Records of jobs others depend on are kept without expiry (``pinned``) until every
dependant is settled: a dependant removes its edges when it reaches a final status, and
whoever removes the last edge of P gives P's record its normal TTL back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

import msgspec
from loguru import logger

from . import constants as c
from .codec import from_wire
from .errors import ConfigurationError, JobNotFoundError, WriteConflictError
from .models import (
    FINAL_STATUSES,
    HeldMessage,
    JobEnvelope,
    JobRecord,
    JobStatus,
    decode_record,
    encode,
    mark_cancelled,
    record_for,
)
from .results import (
    DEPENDANTS_PREFIX,
    ResultStore,
    dependants_marker_subject,
    record_subject,
)
from .transport import Connection, kv, streams

T = TypeVar("T")

#: The stream behind the results bucket.
RESULTS_STREAM = f"KV_{c.RESULTS_BUCKET}"
_FINAL_VALUES = frozenset(status.value for status in FINAL_STATUSES)
#: How many children are handled at once when a parent finishes.
FAN_OUT_CONCURRENCY = 64
#: Compare-and-set attempts on one record before giving up (each loss means progress).
CAS_ATTEMPTS = 10_000
#: Error type of a job cancelled because a dependency failed.
DEPENDENCY_FAILED = "naq:dependency_failed"


def marker_key(job_id: str) -> str:
    """Key of the marker "someone depends on ``job_id``"."""
    return DEPENDANTS_PREFIX + job_id


def edge_key(parent: str, child: str) -> str:
    """Key of the edge "``child`` depends on ``parent``"."""
    return f"{DEPENDANTS_PREFIX}{parent}.{child}"


def _edges_filter(parent: str) -> str:
    return dependants_marker_subject(parent) + ".*"


def succeeded(status: str) -> bool:
    """True if a dependency that ended in ``status`` lets its dependants run."""
    return status == JobStatus.COMPLETED.value


async def bounded(jobs: Iterable[Awaitable[T]], limit: int = FAN_OUT_CONCURRENCY) -> list[T]:
    """Await ``jobs`` with at most ``limit`` in flight; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(job) for job in jobs)))


class Dependencies:
    """Deferred jobs and their release; borrows a connection (never closes it)."""

    def __init__(self, conn: Connection, results: ResultStore, default_ttl: int) -> None:
        self._conn = conn
        self._results = results
        self._default_ttl = default_ttl

    def _ttl(self, record: JobRecord) -> int:
        return int(record.result_ttl or self._default_ttl)

    # -- producer -----------------------------------------------------------------------
    async def defer(self, envelope: JobEnvelope, held: HeldMessage, **fields: Any) -> JobRecord:
        """Store ``envelope``'s job as ``deferred`` until every job in its ``depends_on``
        completed, then publish ``held``. Returns the job's record: the one stored, or the
        existing one if the job id is known already (a unique job runs once).

        Raises :class:`JobNotFoundError` (nothing stored) if a dependency is unknown."""
        parents = list(envelope.depends_on)
        if envelope.id in parents:
            raise ConfigurationError(f"job {envelope.id} cannot depend on itself")
        await self._results.ready()
        found = await asyncio.gather(*(self._results.get(p) for p in parents))
        missing = [p for p, rec in zip(parents, found, strict=True) if rec is None]
        if missing:
            raise JobNotFoundError(
                f"depends_on: job {missing[0]} not found (unknown, or its record expired); "
                "nothing was enqueued"
            )
        record = record_for(envelope, JobStatus.DEFERRED, waiting_on=parents, held=held, **fields)
        data = encode(record)
        self._conn.check_message(record_subject(envelope.id), data, None)  # fits, or raises
        existing = await self._results.create(record, "never")
        if existing is not None:
            if existing.status == JobStatus.DEFERRED.value:
                await self.link(existing)  # an earlier call may have stopped half-way
            return existing
        await self.link(record)
        return record

    async def link(self, child: JobRecord) -> None:
        """Store the marker and edge for each job ``child`` waits on, then apply the outcome
        of those that finished already (the worker of one finishing later sees the edge)."""
        parents = list(child.waiting_on)
        writes = []
        for parent in parents:
            for key in (marker_key(parent), edge_key(parent, child.job_id)):
                write = kv.put_nowait(self._conn, c.RESULTS_BUCKET, key, b"1", ttl="never")
                writes.append(await write)
        await asyncio.gather(*writes)
        records = await asyncio.gather(*(self._results.get(p) for p in parents))
        for parent, record in zip(parents, records, strict=True):
            if record is None:
                # its record expired between our two reads: it cannot be waited for
                status = JobStatus.DEAD.value
                await self._apply_and_follow(parent, status, child.job_id, missing=True)
            elif record.status in _FINAL_VALUES:
                await self.pin(parent)
                await self._apply_and_follow(parent, record.status, child.job_id)

    async def pin(self, job_id: str) -> None:
        """Keep the final record of ``job_id`` without expiry (a new dependant needs it)."""
        for _ in range(CAS_ATTEMPTS):
            entry = await self._results.get_entry(job_id)
            if entry is None or entry[0].pinned:
                return
            record, revision = entry
            record.pinned = True
            if await self._results.update(record, revision, "never"):
                return

    # -- worker ---------------------------------------------------------------------------
    async def store_final(self, job_id: str, data: bytes, status: str) -> None:
        """Store the final record (encoded) of a job others depend on, pinned, then apply
        its outcome to every dependant (called when the conditional write was refused)."""
        record = decode_record(data)
        record.pinned = True
        await self._results.put_pinned(job_id, encode(record))
        await self.finished(job_id, status)

    async def finished(self, job_id: str, status: str) -> None:
        """Apply the final ``status`` of ``job_id`` to its dependants, and theirs in turn for
        cancellations; then unpin it if nobody waits on it any more. Idempotent."""
        todo = [(job_id, status)]
        while todo:
            parent, parent_status = todo.pop()
            children = await self.children(parent)
            outcomes = await bounded(self.apply(parent, parent_status, child) for child in children)
            pairs = zip(children, outcomes, strict=True)
            cancelled = [child for child, outcome in pairs if outcome == "cancelled"]
            todo.extend((child, JobStatus.CANCELLED.value) for child in cancelled)
            await bounded(self._settled_after_cancel(child) for child in cancelled)
        await self.unpin_if_free(job_id)

    async def _settled_after_cancel(self, child: str) -> None:
        record = await self._results.get(child)
        if record is not None:
            await self.settled(child, record.depends_on)

    async def _apply_and_follow(
        self, parent: str, status: str, child: str, *, missing: bool = False
    ) -> None:
        outcome = await self.apply(parent, status, child, missing=missing)
        if outcome == "cancelled":
            await self.finished(child, JobStatus.CANCELLED.value)
            await self._settled_after_cancel(child)

    async def children(self, parent: str) -> list[str]:
        """Ids of the jobs with an edge to ``parent``."""
        counts = await streams.subject_counts(self._conn, RESULTS_STREAM, _edges_filter(parent))
        cut = len(dependants_marker_subject(parent)) + 1
        return [subject[cut:] for subject in counts]

    async def apply(
        self, parent: str, status: str, child: str, *, missing: bool = False
    ) -> str | None:
        """Apply "``parent`` ended in ``status``" to ``child`` (compare-and-set on its
        record). Returns ``"released"``, ``"cancelled"``, or ``None`` (nothing to do)."""
        for _ in range(CAS_ATTEMPTS):
            entry = await self._results.get_entry(child)
            if entry is None:
                return None
            record, revision = entry
            if record.status != JobStatus.DEFERRED.value:
                await self._republish(record)
                return None
            if parent not in record.waiting_on:
                return None
            if succeeded(status) or (record.allow_failure and not missing):
                waiting = [p for p in record.waiting_on if p != parent]
                record.waiting_on = waiting
                if waiting:
                    if await self._results.update(record, revision, "never"):
                        return None
                    continue
                held = record.held
                if held is None:  # a record written by hand: nothing to publish
                    return None
                record.status = held.status
                held.released_at = time.time()
                if await self._results.update(record, revision, self._released_ttl(record)):
                    await self._publish(record, held)
                    return "released"
                continue
            reason = (
                f"dependency {parent} was not found"
                if missing
                else f"dependency {parent} ended {status}; this job never ran"
            )
            mark_cancelled(record, DEPENDENCY_FAILED, reason)
            if await self._results.update(record, revision, self._ttl(record)):
                logger.bind(job_id=child).info("job {} cancelled: {}", child, record.error)
                return "cancelled"
        raise WriteConflictError(f"could not update the record of job {child}: too much contention")

    def _released_ttl(self, record: JobRecord) -> int:
        ttl = self._ttl(record)
        if record.status == JobStatus.SCHEDULED.value and record.next_attempt_at is not None:
            ttl += max(0, int(record.next_attempt_at - time.time()) + 1)
        return ttl

    async def _republish(self, record: JobRecord) -> None:
        """Publish a released job's message again if its releaser may have died before
        publishing it; only inside the duplicate window, so a repeat is always dropped."""
        held = record.held
        if held is None or held.released_at is None:
            return
        if time.time() - held.released_at < c.DUPLICATE_WINDOW - 10:
            await self._publish(record, held)

    async def _publish(self, record: JobRecord, held: HeldMessage) -> None:
        if held.status == JobStatus.SCHEDULED.value:
            subject = c.schedule_subject(record.queue_name, record.job_id)
        else:
            subject = c.queue_subject(record.queue_name)
        await self._conn.publish_idempotent(
            subject, bytes(held.payload), dict(held.headers), f"released job {record.job_id}"
        )

    async def settled(self, job_id: str, depends_on: Iterable[str]) -> None:
        """``job_id`` reached a final status: remove its edges, and unpin each dependency
        nobody else waits on."""
        parents = list(depends_on)
        await asyncio.gather(
            *(
                streams.purge(
                    self._conn, RESULTS_STREAM, kv.subject(c.RESULTS_BUCKET, edge_key(p, job_id))
                )
                for p in parents
            )
        )
        await asyncio.gather(*(self.unpin_if_free(p) for p in parents))

    async def unpin_if_free(self, job_id: str) -> None:
        """Give a finished job's record its normal TTL back once no edge leads to it."""
        for _ in range(CAS_ATTEMPTS):
            if await streams.count_subjects(self._conn, RESULTS_STREAM, _edges_filter(job_id)):
                return
            entry = await self._results.get_entry(job_id)
            if entry is None or entry[0].status not in _FINAL_VALUES:
                return
            record, revision = entry
            if record.pinned:
                record.pinned = False
                if not await self._results.update(record, revision, self._ttl(record)):
                    continue  # a new dependant pinned it meanwhile: count again
            await streams.purge(self._conn, RESULTS_STREAM, dependants_marker_subject(job_id))
            return

    async def has_dependants(self, job_id: str) -> bool:
        """True if the marker "someone depends on ``job_id``" exists."""
        return await kv.get(self._conn, c.RESULTS_BUCKET, marker_key(job_id)) is not None

    async def results_of(self, job_ids: Iterable[str]) -> dict[str, Any]:
        """The return values of the completed jobs among ``job_ids``."""
        ids = list(job_ids)
        records = await asyncio.gather(*(self._results.get(i) for i in ids))
        values: dict[str, Any] = {}
        for job_id, record in zip(ids, records, strict=True):
            if record is not None and record.status == JobStatus.COMPLETED.value:
                try:
                    values[job_id] = from_wire(record.result)
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                    continue
        return values


async def cancel_dependants(conn: Connection, cancelled: Iterable[str]) -> None:
    """Cancel the dependants of jobs that were just cancelled in bulk (a queue purge): one
    listing of the dependants markers finds which of them others depend on."""
    prefix = dependants_marker_subject("")
    markers = await streams.subject_counts(conn, RESULTS_STREAM, prefix + "*")
    parents = {subject[len(prefix) :] for subject in markers}
    wanted = [job_id for job_id in cancelled if job_id in parents]
    if not wanted:
        return
    deps = Dependencies(conn, ResultStore(conn), conn.settings.result_ttl)
    await bounded(deps.finished(job_id, JobStatus.CANCELLED.value) for job_id in wanted)
