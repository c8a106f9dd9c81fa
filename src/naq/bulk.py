"""``enqueue_many`` of plain jobs: validated and serialized all before the first is sent, then
published in pipelined chunks (each after its batch record), or as one JetStream atomic
batch; and waiting for the server's acknowledgements of many publishes at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import constants as c
from .batches import BATCH_SIZE, BatchRecord, batch_job_id, batch_key
from .calls import prepare_call
from .errors import (
    ConfigurationError,
    NaqConnectionError,
    NaqException,
    NaqTimeoutError,
    PublishNotConfirmedError,
    ServerError,
    WriteConflictError,
)
from .job import Job, JobOptions, iter_calls, new_job_id
from .messages import job_header_block
from .models import JobEnvelope, encode
from .results import absent_headers, record_subject
from .transport import Connection

if TYPE_CHECKING:
    from .queue import Queue

#: How many ``enqueue_many`` publishes may await their acknowledgement at once.
PUBLISH_WINDOW = 2000


async def enqueue_chunked(queue: Queue, calls: Iterable[Any], opts: JobOptions) -> list[Job]:
    """``enqueue_many`` without ``atomic`` or ``depends_on``: chunks of
    :data:`~naq.batches.BATCH_SIZE` jobs, each after its batch record, published with at most
    2 x :data:`PUBLISH_WINDOW` acknowledgements awaited at once."""
    chunks: list[tuple[str, list[tuple[Job, JobEnvelope]]]] = []
    for n, (func, args, kwargs) in enumerate(iter_calls(calls)):
        if n % BATCH_SIZE == 0:
            chunks.append((new_job_id(), []))
        batch_id, chunk = chunks[-1]
        job_id = batch_job_id(batch_id, len(chunk))
        chunk.append(prepare_call(queue, func, args, kwargs, opts, job_id=job_id))
    if not chunks:
        return []
    conn = await queue.connection()
    await conn.ensure_jobs_stream()
    await (await queue.results()).ready()
    ttl = opts.result_ttl or queue.settings.result_ttl
    subject = c.queue_subject(queue.name, opts.priority)
    # every job encoded and checked before the first is sent
    conn.check_message(subject, b"", None)
    max_payload = conn.max_payload
    encoded: list[list[tuple[bytes, bytes]]] = []
    hooked = queue.has_enqueue_hooks
    for _batch_id, chunk in chunks:
        messages = []
        for job, envelope in chunk:
            if hooked:
                await queue.before_enqueue(job, envelope)
            payload = encode(envelope)
            block = job_header_block(
                queue.settings, job.job_id, payload, envelope.headers, subject=subject
            )
            if len(payload) + len(block) > max_payload:
                conn.check_message(subject, payload, block)  # raises, naming the limit
            messages.append((payload, block))
        encoded.append(messages)
    futures: list[asyncio.Future[Any]] = []
    jobs: list[Job] = []
    for (batch_id, chunk), messages in zip(chunks, encoded, strict=True):
        batch = BatchRecord.of(batch_id, [envelope for _, envelope in chunk])
        # stored before its jobs: no job of the batch is ever without a status
        key = record_subject(batch_key(batch_id))
        await settle([await conn.send(key, encode(batch), absent_headers(ttl))])
        for (job, _envelope), (payload, block) in zip(chunk, messages, strict=True):
            futures.append(conn.send_nowait(subject, payload, block))
            if len(futures) >= 2 * PUBLISH_WINDOW:
                # keep publishing while the older half is confirmed (a steady pipeline)
                await settle(futures[:PUBLISH_WINDOW])
                del futures[:PUBLISH_WINDOW]
            jobs.append(job)
    await settle(futures)
    if hooked:
        for job in jobs:
            await queue.after_enqueue(job)
    return jobs


async def settle(futures: list[asyncio.Future[Any]]) -> None:
    """Wait for publish acknowledgements (each fails by itself after the publisher's
    timeout) and raise the first real refusal."""
    if not futures:
        return
    if len(futures) == 1:  # the single-enqueue case: no gather, no extra loop turn
        with contextlib.suppress(Exception):
            await futures[0]
        outcomes: list[Any] = [futures[0].exception()]
    else:
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for outcome in outcomes:
        if not isinstance(outcome, BaseException):
            continue
        if isinstance(outcome, WriteConflictError):
            continue  # a pending record arrived after the job's outcome: keep the outcome
        if isinstance(outcome, PublishNotConfirmedError):
            unconfirmed = sum(isinstance(o, PublishNotConfirmedError) for o in outcomes)
            raise PublishNotConfirmedError(
                f"NATS did not confirm {unconfirmed} of {len(outcomes)} enqueued writes, "
                f"each re-sent with its own message id until the deadline; they may not be "
                f"stored ({outcome})"
            ) from None
        if isinstance(outcome, NaqTimeoutError):
            raise NaqTimeoutError(
                "NATS did not confirm the enqueued jobs in time; some may not be stored"
            ) from None
        if isinstance(outcome, NaqException):
            raise outcome
        raise NaqConnectionError(f"NATS refused an enqueued job: {outcome}") from outcome


async def enqueue_atomic(
    queue: Queue, calls: Iterable[Any], opts: JobOptions, atomic: object
) -> list[Job]:
    """``enqueue_many(..., atomic=True)``: the jobs as one JetStream atomic batch, after
    their batch record; the record is removed again if NATS refuses the batch."""
    from .transport.atomic import MAX_MESSAGES, AtomicBatch

    if atomic is not True:
        raise ConfigurationError(f"atomic must be True or False, got {atomic!r}")
    if opts.depends_on:
        raise ConfigurationError("atomic=True cannot be combined with depends_on")
    triples = list(iter_calls(calls))
    if len(triples) > MAX_MESSAGES:
        raise ConfigurationError(
            f"enqueue_many(atomic=True) takes at most {MAX_MESSAGES} calls (NATS' limit "
            f"for one atomic batch), got {len(triples)}; split them or use atomic=False"
        )
    if not triples:
        return []
    batch_id = new_job_id()
    prepared = [
        prepare_call(queue, func, args, kwargs, opts, job_id=batch_job_id(batch_id, n))
        for n, (func, args, kwargs) in enumerate(triples)
    ]
    conn = await queue.connection()
    await conn.ensure_jobs_stream()
    await (await queue.results()).ready()
    subject = c.queue_subject(queue.name, opts.priority)
    messages: list[tuple[str, bytes, bytes]] = []
    for job, envelope in prepared:
        await queue.before_enqueue(job, envelope)
        payload = encode(envelope)
        block = job_header_block(
            queue.settings, job.job_id, payload, envelope.headers, subject=subject
        )
        messages.append((subject, payload, block))
    batch = AtomicBatch(conn, messages, batch_id=batch_id)  # checks every message
    record = BatchRecord.of(batch_id, [envelope for _, envelope in prepared])
    key = record_subject(batch_key(batch_id))
    ttl = opts.result_ttl or queue.settings.result_ttl
    # stored before its jobs: no job of the batch is ever without a status
    await settle([await conn.send(key, encode(record), absent_headers(ttl))])
    try:
        await batch.commit()
    except ServerError as exc:  # refused: nothing of the batch was stored
        left = await _remove_batch_record(conn, key)
        raise ServerError(
            f"the atomic batch of {len(prepared)} jobs was refused by NATS: {exc}{left}",
            code=exc.code,
            err_code=exc.err_code,
        ) from None
    for job, _envelope in prepared:
        await queue.after_enqueue(job)
    return [job for job, _ in prepared]


async def _remove_batch_record(conn: Connection, key: str) -> str:
    """Remove the batch record on ``key`` (its jobs were never stored); returns ``""``,
    or a note saying why it could not be removed."""
    from .transport import kv, streams

    try:
        await streams.purge(conn, kv.stream_name(c.RESULTS_BUCKET), key)
    except NaqException as exc:
        return f" (its pending record could not be removed: {exc})"
    return ""
