"""Job dependencies (``depends_on``): deferred jobs, the edges to the jobs they wait for,
and their release or cancellation. Event-driven, compare-and-set only, no locks and no
polling.

Keys in the results bucket, next to the job records (``<id>``; a job id has no dot):

* ``deps.<P>``, the marker "someone depends on P". A worker stores P's final record on the
  condition that this subject holds no message (``Nats-Expected-Last-Subject-Sequence: 0``
  with ``...-Subject``): nobody depends on most jobs, so the write simply goes through and
  costs nothing more than before. Refused, it means P has dependants.
* ``deps.<P>.<C>``, the edge "C depends on P": one key per edge, so ten thousand children
  of one parent never contend for one key. Listing them finds P's dependants.
* ``wait.<C>.<P>``, "C still waits for P", only for a C with two or more dependencies: a
  finished P purges its key and counts what is left, so a thousand parents finishing at
  once never rewrite one shared record (each purge and count is independent; the one that
  purges the last key counts zero).
* ``deferred.<queue>.<C>``, the index "C is deferred", so a listing counts a queue's
  deferred jobs with one request (:func:`count_deferred`). Stored with C's record, in the
  same round trip; removed (a raw purge of its one subject, so no marker is left to count)
  once C is released or cancelled. Its expiry is C's ``expires_at``, if it has one: a job
  not started by then never runs, and stops counting as deferred by itself.

A deferred job's record holds its ``held`` message and is written twice at most: stored
``deferred``, then released (status ``pending`` or ``scheduled``, its message published
with the job's ``Nats-Msg-Id``) or cancelled, each by compare-and-set. Two workers that
both count zero (or, for one dependency, both see it done) race on that one write; the
loser re-reads and finds nothing left to do: released once. A dependency that failed for
good (failed, dead, cancelled) cancels C instead, unless C was enqueued with
``allow_failure=True``, and the cancellation goes on down C's own edges.

Nothing is missed between producer and worker. The producer stores C's wait keys, then
its edges, then the markers, and only then reads P's record; the worker writes P's final
record conditionally and, if refused, writes it again unconditionally and only then lists
P's edges. An accepted conditional write was stored before the marker, so the producer's
read after the marker sees P finished and applies it itself. After a refused one, an edge
stored before the listing is listed, and an edge stored after it is followed by the
producer's read, which sees the final record written before the listing. Applying P's
outcome twice changes nothing.

A crash is covered by redelivery: a worker acks P only after every child was handled; if it
dies first, the next delivery of P finds P's final record, sees the marker, and goes over
the edges again (a child released but perhaps not published is published again while the
duplicate window still drops a repeat).

Records of jobs others depend on are kept without expiry (``pinned``) until every
dependant is settled: a dependant removes its edges when it reaches a final status, and
once no edge leads to P (checked a moment later, once for a burst of dependants settling)
P's record gets its normal TTL back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import msgspec
from loguru import logger

from . import constants as c
from .codec import from_wire
from .errors import ConfigurationError, JobNotFoundError, WriteConflictError
from .expiry import has_expired, mark_expired
from .models import (
    FINAL_STATUS_VALUES,
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
RESULTS_STREAM = kv.stream_name(c.RESULTS_BUCKET)
#: How many children are handled at once when a parent finishes.
FAN_OUT_CONCURRENCY = 64
#: Compare-and-set attempts on one record before giving up (each loss means progress).
CAS_ATTEMPTS = 10_000
#: Key prefix of "still waits for" keys (see the module docstring).
WAIT_PREFIX = "wait."
#: Seconds between a dependant settling and the check whether its dependency may expire
#: again (one count for a burst of dependants settling, not one per dependant).
UNPIN_DELAY = 0.5
#: Error type of a job cancelled because a dependency failed.
DEPENDENCY_FAILED = "naq:dependency_failed"
#: Key prefix of the index of deferred jobs (see the module docstring).
DEFERRED_PREFIX = "deferred."


def marker_key(job_id: str) -> str:
    """Key of the marker "someone depends on ``job_id``"."""
    return DEPENDANTS_PREFIX + job_id


def edge_key(parent: str, child: str) -> str:
    """Key of the edge "``child`` depends on ``parent``"."""
    return f"{DEPENDANTS_PREFIX}{parent}.{child}"


def _edges_filter(parent: str) -> str:
    return dependants_marker_subject(parent) + ".*"


def wait_key(child: str, parent: str) -> str:
    """Key of "``child`` still waits for ``parent``" (children of two or more parents)."""
    return f"{WAIT_PREFIX}{child}.{parent}"


def _wait_filter(child: str) -> str:
    return kv.subject_prefix(c.RESULTS_BUCKET) + WAIT_PREFIX + child + ".*"


def deferred_key(queue: str, job_id: str) -> str:
    """Key of the index entry "``job_id`` of ``queue`` is deferred"."""
    return f"{DEFERRED_PREFIX}{queue}.{job_id}"


def _deferred_subject(job_id: str, queue: str | None) -> str:
    """The index entry of ``job_id`` of ``queue`` (``None``: whatever its queue, a filter)."""
    return kv.subject_prefix(c.RESULTS_BUCKET) + deferred_key(queue or "*", job_id)


async def count_deferred(conn: Connection, queue: str) -> int:
    """How many jobs of ``queue`` wait for the jobs they depend on (one request)."""
    prefix = kv.subject_prefix(c.RESULTS_BUCKET) + DEFERRED_PREFIX
    return await streams.count_subjects(conn, RESULTS_STREAM, f"{prefix}{queue}.*")


async def forget_deferred(conn: Connection, job_id: str, queue: str | None = None) -> None:
    """Remove the index entry of ``job_id`` (released or cancelled; nothing if none), of
    ``queue`` only when given."""
    await streams.purge(conn, RESULTS_STREAM, _deferred_subject(job_id, queue))


def _index_ttl(record: JobRecord) -> int | str:
    """How long a deferred job's index entry is kept: until it expires, or for ever."""
    if record.expires_at is None:
        return "never"
    return max(1, math.ceil(record.expires_at - time.time()))


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
    """Deferred jobs and their release; borrows a connection (never closes it).

    ``unpin_delay``: with a number, checks whether a dependency may expire again are
    gathered for that many seconds (a long-lived worker); ``None`` checks at once.
    ``on_cancelled`` is told of each deferred job this object cancels (a dependency failed,
    or it expired), for the ``on_cancel`` hooks."""

    def __init__(
        self,
        conn: Connection,
        results: ResultStore,
        default_ttl: int,
        *,
        unpin_delay: float | None = None,
        on_cancelled: Callable[[JobRecord], None] | None = None,
    ) -> None:
        self._conn = conn
        self._results = results
        self._default_ttl = default_ttl
        self._unpin_delay = unpin_delay
        self._on_cancelled = on_cancelled
        self._unpin_due: set[str] = set()
        self._unpinning: asyncio.Task[None] | None = None

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
        record = record_for(envelope, JobStatus.DEFERRED, held=held, **fields)
        data = encode(record)
        self._conn.check_message(record_subject(envelope.id), data, None)  # fits, or raises
        # the index entry goes out first, in the same round trip as the record: stored
        # before anything can release the job (that needs the record and its edges)
        index = await kv.put_nowait(
            self._conn,
            c.RESULTS_BUCKET,
            deferred_key(envelope.queue, envelope.id),
            b"1",
            ttl=_index_ttl(record),
        )
        try:
            existing = await self._results.create(record, "never")
            await index
        except Exception:
            await self._unindex_after_error(index, envelope)
            raise
        if existing is not None:
            if existing.status != JobStatus.DEFERRED.value or existing.queue_name != envelope.queue:
                # not this job deferred: the entry just written indexes nothing
                await forget_deferred(self._conn, envelope.id, envelope.queue)
            if existing.status == JobStatus.DEFERRED.value:
                await self.link(existing)  # an earlier call may have stopped half-way
            return existing
        await self.link(record)
        return record

    async def _unindex_after_error(self, index: Awaitable[int], envelope: JobEnvelope) -> None:
        """The record of a job just indexed was not stored: remove its index entry (it
        counts nothing); a failure to do so is logged, the caller's error raised."""
        try:
            await index
        except Exception:  # noqa: BLE001 - the caller raises its own error
            return  # not stored either
        try:
            await forget_deferred(self._conn, envelope.id, envelope.queue)
        except Exception as exc:  # noqa: BLE001 - the caller raises its own error
            logger.warning("job {} may count as deferred: {}", envelope.id, exc)

    async def link(self, child: JobRecord) -> None:
        """Store the wait keys, edges and markers of ``child`` (in that order, see the
        module docstring), then apply the outcome of the dependencies that finished
        already (the worker of one finishing later lists the edge)."""
        parents = list(child.depends_on)
        if len(parents) > 1:
            await self._put_all(wait_key(child.job_id, p) for p in parents)
        await self._put_all(edge_key(p, child.job_id) for p in parents)
        await self._put_all(marker_key(p) for p in parents)
        records = await asyncio.gather(*(self._results.get(p) for p in parents))

        async def finished_already(parent: str, record: JobRecord | None) -> None:
            if record is None:
                # its record expired between our two reads: it cannot be waited for
                status = JobStatus.DEAD.value
                await self._apply_and_follow(parent, status, child.job_id, missing=True)
            elif record.status in FINAL_STATUS_VALUES:
                await self.pin(parent)
                await self._apply_and_follow(parent, record.status, child.job_id)

        await bounded(
            finished_already(parent, record)
            for parent, record in zip(parents, records, strict=True)
            if record is None or record.status in FINAL_STATUS_VALUES
        )

    async def _put_all(self, keys: Iterable[str]) -> None:
        writes = [
            await kv.put_nowait(self._conn, c.RESULTS_BUCKET, key, b"1", ttl="never")
            for key in keys
        ]
        await asyncio.gather(*writes)

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

    async def waiting_on(self, record: JobRecord) -> list[str]:
        """The dependencies a ``deferred`` job still waits for (none for other statuses)."""
        if record.status != JobStatus.DEFERRED.value:
            return []
        if len(record.depends_on) < 2:
            return list(record.depends_on)
        counts = await streams.subject_counts(
            self._conn, RESULTS_STREAM, _wait_filter(record.job_id)
        )
        left = {subject.rsplit(".", 1)[-1] for subject in counts}
        return [p for p in record.depends_on if p in left]

    # -- worker ---------------------------------------------------------------------------
    async def store_final(self, job_id: str, data: bytes, status: str) -> None:
        """Store the final record (encoded) of a job others depend on, pinned, then apply
        its outcome to every dependant (called when the conditional write was refused).

        The pinned write is stored *before* the edges are listed: a producer whose edge
        the listing misses reads the record after writing that edge, and finds it final."""
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
            kids = await self.children(parent)
            outcomes = await bounded(self.apply(parent, parent_status, kid) for kid in kids)
            pairs = zip(kids, outcomes, strict=True)
            cancelled = [kid for kid, outcome in pairs if outcome == "cancelled"]
            todo.extend((kid, JobStatus.CANCELLED.value) for kid in cancelled)
            await bounded(self._settled_after_cancel(kid) for kid in cancelled)
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
        """Apply "``parent`` ended in ``status``" to ``child``. Returns ``"released"``,
        ``"cancelled"``, or ``None`` (nothing to do, or still waiting for others)."""
        entry = await self._results.get_entry(child)
        if entry is None:
            return None
        record, revision = entry
        if record.status != JobStatus.DEFERRED.value:
            await self._republish(record)
            return None
        if parent not in record.depends_on:
            return None  # an edge that does not match the record: nothing to apply
        if has_expired(record.expires_at):  # it can never start now: cancelled as expired
            return await self._settle_deferred(record, revision, None)
        if not (succeeded(status) or (record.allow_failure and not missing)):
            reason = (
                f"dependency {parent} was not found"
                if missing
                else f"dependency {parent} ended {status}; this job never ran"
            )
            return await self._settle_deferred(record, revision, reason)
        if len(record.depends_on) > 1:
            await streams.purge(
                self._conn, RESULTS_STREAM, kv.subject(c.RESULTS_BUCKET, wait_key(child, parent))
            )
            if await streams.count_subjects(self._conn, RESULTS_STREAM, _wait_filter(child)):
                return None  # others still to finish; the last one releases it
        return await self._settle_deferred(record, revision, None)

    async def _settle_deferred(
        self, record: JobRecord, revision: int, cancel_reason: str | None
    ) -> str | None:
        """Release (``cancel_reason`` None) or cancel a deferred job, by compare-and-set;
        whoever loses the race finds it settled and does nothing. A job past its
        ``expires_at`` is cancelled as expired instead (it was never started in time)."""
        for _ in range(CAS_ATTEMPTS):
            if has_expired(record.expires_at):
                mark_expired(record)
            elif cancel_reason is not None:
                mark_cancelled(record, DEPENDENCY_FAILED, cancel_reason)
            if record.status == JobStatus.CANCELLED.value:
                if await self._results.update(record, revision, self._ttl(record)):
                    logger.bind(job_id=record.job_id).info(
                        "job {} cancelled: {}", record.job_id, record.error
                    )
                    if self._on_cancelled is not None:
                        self._on_cancelled(record)
                    return "cancelled"
            else:
                held = record.held
                if held is None:  # a record written by hand: nothing to publish
                    return None
                record.status = held.status
                held.released_at = time.time()
                if await self._results.update(record, revision, self._released_ttl(record)):
                    await self._publish_and_unindex(record, held)
                    return "released"
            entry = await self._results.get_entry(record.job_id)
            if entry is None or entry[0].status != JobStatus.DEFERRED.value:
                return None
            record, revision = entry
        raise WriteConflictError(
            f"could not update the record of job {record.job_id}: too much contention"
        )

    def _released_ttl(self, record: JobRecord) -> int:
        ttl = self._ttl(record)
        if record.status == JobStatus.SCHEDULED.value and record.next_attempt_at is not None:
            ttl += max(0, int(record.next_attempt_at - time.time()) + 1)
        return ttl

    async def _publish_and_unindex(self, record: JobRecord, held: HeldMessage) -> None:
        """Publish a released job's message; its index entry goes at the same time (not
        before: the publish waits for nothing else)."""
        unindexed = asyncio.ensure_future(
            forget_deferred(self._conn, record.job_id, record.queue_name)
        )
        try:
            await self._publish(record, held)
        finally:
            await unindexed

    async def _republish(self, record: JobRecord) -> None:
        """Publish a released job's message again (and remove its index entry again) if its
        releaser may have died before doing so; only inside the duplicate window, so a
        repeat is always dropped."""
        held = record.held
        if held is None or held.released_at is None:
            return
        if time.time() - held.released_at < c.DUPLICATE_WINDOW - 10:
            await self._publish_and_unindex(record, held)

    async def _publish(self, record: JobRecord, held: HeldMessage) -> None:
        if held.status == JobStatus.SCHEDULED.value:
            subject = c.schedule_subject(record.queue_name, record.job_id)
        else:
            subject = c.queue_subject(record.queue_name, record.priority)
        await self._conn.publish_idempotent(
            subject, bytes(held.payload), dict(held.headers), f"released job {record.job_id}"
        )

    async def settled(self, job_id: str, depends_on: Iterable[str]) -> None:
        """``job_id`` reached a final status: remove its wait keys, edges and deferred index
        entry, and unpin each dependency nobody else waits on (a moment later, with
        ``unpin_delay``)."""
        parents = list(depends_on)
        subjects = [kv.subject(c.RESULTS_BUCKET, edge_key(p, job_id)) for p in parents]
        if len(parents) > 1:
            subjects.append(_wait_filter(job_id))
        if parents:
            # a job cancelled while deferred (cancel_job, or a failed dependency) is still
            # indexed; a released one is not, and this purge (in parallel) removes nothing
            subjects.append(_deferred_subject(job_id, None))
        await asyncio.gather(
            *(streams.purge(self._conn, RESULTS_STREAM, subject) for subject in subjects)
        )
        if self._unpin_delay is None:
            await asyncio.gather(*(self.unpin_if_free(p) for p in parents))
            return
        self._unpin_due.update(parents)
        if self._unpinning is None or self._unpinning.done():
            self._unpinning = asyncio.create_task(self._unpin_later(self._unpin_delay))

    async def _unpin_later(self, delay: float) -> None:
        while self._unpin_due:
            await asyncio.sleep(delay)
            await self.flush()

    async def flush(self) -> None:
        """Run the unpin checks gathered so far (a worker calls this as it stops); a check
        that fails is logged (the record then keeps no expiry)."""
        due, self._unpin_due = self._unpin_due, set()

        async def check(job_id: str) -> None:
            try:
                await self.unpin_if_free(job_id)
            except Exception as exc:  # noqa: BLE001 - one failed check must not stop others
                logger.warning("could not restore the expiry of job {}: {}", job_id, exc)

        await bounded((check(job_id) for job_id in due), 16)

    async def unpin_if_free(self, job_id: str) -> None:
        """Give a finished job's record its normal TTL back once no edge leads to it."""
        for _ in range(CAS_ATTEMPTS):
            if await streams.count_subjects(self._conn, RESULTS_STREAM, _edges_filter(job_id)):
                return
            entry = await self._results.get_entry(job_id)
            if entry is None or entry[0].status not in FINAL_STATUS_VALUES:
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
