"""What happens to one job message: decode, check, run, store the outcome, then ack.

The order is the invariant users trust: the outcome (result, failure or dead letter) is
stored before the message is acked, termed or nak'ed."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import nats.errors
from loguru import logger
from nats.aio.msg import Msg

from .. import constants as c
from ..codec import to_wire
from ..context import JobContext
from ..errors import JobTimeoutError, NaqConnectionError, SerializationError
from ..functions import FunctionNotAllowedError, FunctionNotFoundError
from ..models import (
    FINAL_STATUSES,
    AttemptRecord,
    JobEnvelope,
    JobRecord,
    JobStatus,
    decode_envelope,
    encode,
    record_for,
)
from ..serialization import decode_call, signature_valid
from ..wire import ACK, TERM, nak_body, reply_to
from .delayed import DelayedCall
from .retry import decide

if TYPE_CHECKING:
    from .core import Worker

T = TypeVar("T")


@dataclass(slots=True)
class Run:
    """One run of a job's function: what its ``running`` and outcome records say."""

    envelope: JobEnvelope
    attempt: int
    history: list[AttemptRecord]  # earlier attempts, from the job's record
    ctx: JobContext
    started: float = field(default_factory=time.time)


@dataclass(slots=True)
class Delivery:
    """A message this worker holds: its lease is renewed until it is settled."""

    msg: Msg
    seq: int  # stream sequence: the message's identity across redeliveries
    delivered: int  # how many times the server delivered it (this one included)
    received_at: float = field(default_factory=time.monotonic)
    job_id: str | None = None
    settled: bool = False
    task: asyncio.Task[Any] | None = None
    run: Run | None = None  # the run in progress, once the function is started
    running_write: asyncio.Task[None] | None = None
    suspect: bool = False  # redelivered after its worker died: runs alone
    suspect_runs: int = 0  # times it was started alone after such a redelivery
    handed_back: int = 0  # from the job record: earlier deliveries returned at shutdown
    slot_handed: bool = False  # the executor now owns the slot taken for this delivery


_FINAL_VALUES = frozenset(status.value for status in FINAL_STATUSES)
#: A job still running after this many seconds gets its ``running`` record written.
RUNNING_WRITE_DELAY = 0.02
#: How long the worker keeps trying to store an outcome while NATS is unreachable, seconds.
STORE_RETRY_FOR = 60.0
_TRANSIENT = (nats.errors.Error, OSError, TimeoutError, NaqConnectionError)


async def with_retries(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` until it succeeds or ``STORE_RETRY_FOR`` passes (reconnects, leader
    elections); the lease keeps the message ours meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORE_RETRY_FOR
    delay = 0.1
    while True:
        try:
            return await attempt()
        except _TRANSIENT as exc:
            if loop.time() + delay > deadline:
                raise
            logger.debug("{} failed ({}); retrying in {:.1f} s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def _qualified(exc: BaseException) -> str:
    return f"{type(exc).__module__}:{type(exc).__qualname__}"


class JobProcessor:
    """Processes deliveries for a :class:`~naq.worker.Worker`."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker

    def start(self, delivery: Delivery) -> None:
        """Begin processing a delivery whose slot is taken; never raises.

        The common case, a first delivery, runs without a task of naq's own: decoded here,
        the function run by the executor (a pool thread, or a task for a coroutine
        function), its outcome stored and acked from callbacks. Anything else
        (redeliveries, signatures, and everything that fails) goes through :meth:`process`.
        """
        prepared = self._prepare_first(delivery)
        if prepared is None:
            delivery.task = asyncio.create_task(self.process(delivery))
            return
        envelope, func, args, kwargs = prepared
        w = self.w
        run, mark = self._begin(delivery, envelope, 1, [])

        def done(result: Any, error: BaseException | None) -> None:
            mark.cancel()
            self._run_done(delivery, run, result, error)

        delivery.slot_handed = True
        try:
            if w.executor.is_async(func):
                delivery.task = w.executor.submit_async(
                    func, args, kwargs, run.ctx, envelope.timeout, done
                )
            else:
                w.executor.submit(func, args, kwargs, run.ctx, envelope.timeout, done)
        except Exception:  # noqa: BLE001 - e.g. the pool is shut down: the task path reports it
            mark.cancel()
            delivery.slot_handed = False
            delivery.task = asyncio.create_task(self.process(delivery))

    def _prepare_first(
        self, delivery: Delivery
    ) -> tuple[JobEnvelope, Any, list[Any], dict[str, Any]] | None:
        """Envelope, function and arguments of a plain first delivery, or ``None`` when the
        delivery needs the full path (redelivered, signed, or anything wrong with it)."""
        w = self.w
        if delivery.delivered != 1 or w.settings.signing_key is not None:
            return None
        try:
            envelope = decode_envelope(delivery.msg.data)
            func = w.resolver.resolve(envelope.fn)
            args, kwargs = decode_call(envelope, w.settings)
        except Exception:  # noqa: BLE001 - process() decodes again and records what is wrong
            return None
        delivery.job_id = envelope.id
        return envelope, func, args, kwargs

    def _run_done(
        self, delivery: Delivery, run: Run, value: Any, error: BaseException | None
    ) -> None:
        """A job of :meth:`start` ended (on the loop): store its outcome, then ack."""
        if delivery.settled or isinstance(error, asyncio.CancelledError):
            # handed back at shutdown while it ran, or stopped with the worker: the next
            # delivery runs it
            self.w.forget(delivery)
            return
        result: Any = None
        if error is None:
            try:
                result = to_wire(value, what="result")
            except Exception as exc:  # noqa: BLE001 - an unstorable result fails the job
                error = exc
        if error is not None or delivery.running_write is not None:
            finish = self._finish(delivery, run, result, error)
            delivery.task = asyncio.create_task(self._guarded(delivery, finish))
            return
        record = self._completed_record(delivery, run, result)
        try:
            stored = self.w.results.put_nowait(record, self._ttl(run.envelope))
        except _TRANSIENT:
            self._store_in_task(delivery, run.envelope, record)
            return
        stored.add_done_callback(lambda f: self._stored(delivery, run.envelope, record, f))

    def _stored(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        record: JobRecord,
        stored: asyncio.Future[int],
    ) -> None:
        if stored.cancelled() or stored.exception() is not None:
            self._store_in_task(delivery, envelope, record)  # retried, or reported there
            return
        try:
            self._acknowledge(delivery)
        except Exception as exc:  # noqa: BLE001 - closed meanwhile: redelivered, then skipped
            logger.debug("ack of {} failed: {}", envelope.id, exc)
        self.w.forget(delivery)

    def _store_in_task(self, delivery: Delivery, envelope: JobEnvelope, record: JobRecord) -> None:
        async def store_then_ack() -> None:
            await self._store(record, envelope)
            self._acknowledge(delivery)

        delivery.task = asyncio.create_task(self._guarded(delivery, store_then_ack()))

    async def process(self, delivery: Delivery) -> None:
        """Handle one delivery end to end; never raises (a bad message must not kill the worker)."""
        await self._guarded(delivery, self._process(delivery))

    async def _guarded(self, delivery: Delivery, work: Awaitable[None]) -> None:
        """Await ``work`` for ``delivery``; an internal error hands the message back."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: hand the message back
            logger.exception("internal error processing a message: {}", exc)
            if not delivery.settled:
                delivery.settled = True
                try:
                    reply_to(delivery.msg, nak_body(5))
                except Exception:  # noqa: BLE001
                    pass
        finally:
            if not delivery.slot_handed:
                self.w.executor.release()
            self.w.forget(delivery)

    async def _process(self, delivery: Delivery) -> None:
        w = self.w
        msg = delivery.msg
        queue = msg.subject.removeprefix(c.QUEUE_SUBJECT_PREFIX)
        try:
            envelope = decode_envelope(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead(
                delivery, queue, None, None, "undecodable", f"cannot decode job: {exc}"
            )
            return
        delivery.job_id = envelope.id
        if w.settings.signing_key is not None:
            signature = (msg.headers or {}).get(c.HEADER_SIGNATURE)
            if not signature_valid(msg.data, signature, w.settings.signing_key):
                await self._dead(
                    delivery,
                    queue,
                    envelope,
                    None,
                    "bad_signature",
                    "missing or invalid signature (NAQ_SIGNING_KEY)",
                )
                return
        deliveries = delivery.delivered
        attempt, history = deliveries, []
        if deliveries > 1:
            # earlier attempts' errors, and deliveries handed back at shutdown (not attempts)
            previous = await w.results.get(envelope.id)
            if previous is not None and previous.status in _FINAL_VALUES:
                # its outcome is stored: the worker that stored it died (or lost the
                # connection) before its ack arrived. Nothing to run again.
                logger.info("job {} is {} already; acknowledging", envelope.id, previous.status)
                self._settle(delivery, ACK)
                return
            if previous is not None:
                history = list(previous.attempts)
                delivery.handed_back = previous.handed_back
                delivery.suspect_runs = previous.suspect_runs
                attempt = max(1, deliveries - previous.handed_back)
            # Delivered again without a recorded outcome or retry: its worker died (or lost
            # it) while it ran. Run it alone, so a job that kills workers cannot get the
            # healthy jobs that shared the worker with it counted as crash loops too.
            retrying = previous is not None and previous.status == JobStatus.RETRYING.value
            delivery.suspect = attempt > 1 and not retrying
        if delivery.suspect and delivery.suspect_runs >= w.max_crashes:
            await self._dead(
                delivery,
                queue,
                envelope,
                attempt,
                "crash_loop",
                f"its worker died while running it {delivery.suspect_runs + 1} times "
                f"(it ran alone after the first; limit max_crashes={w.max_crashes})",
            )
            return
        try:
            func = w.resolver.resolve(envelope.fn)
        except FunctionNotAllowedError as exc:
            await self._dead(delivery, queue, envelope, attempt, "refused", str(exc))
            return
        except FunctionNotFoundError as exc:
            await self._dead(delivery, queue, envelope, attempt, "function_not_found", str(exc))
            return
        try:
            args, kwargs = decode_call(envelope, w.settings)
        except Exception as exc:  # noqa: BLE001 - any decode failure is a dead letter
            await self._dead(
                delivery, queue, envelope, attempt, "undecodable", f"cannot decode arguments: {exc}"
            )
            return
        if delivery.suspect:
            async with w.exclusive():
                # counted before it runs: if it kills this worker too, the next one knows
                delivery.suspect_runs += 1
                running = self._record(
                    delivery, envelope, JobStatus.RUNNING, attempt, time.time(), history
                )
                await self._store(running, envelope)
                await self._run(delivery, envelope, attempt, history, func, args, kwargs)
        else:
            await self._run(delivery, envelope, attempt, history, func, args, kwargs)

    async def _run(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        attempt: int,
        history: list[AttemptRecord],
        func: Any,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        run, mark = self._begin(delivery, envelope, attempt, history)
        delivery.slot_handed = True
        failure: BaseException | None = None
        result: Any = None
        try:
            value = await self.w.executor.run(func, args, kwargs, run.ctx, envelope.timeout)
            result = to_wire(value, what="result")
        except asyncio.CancelledError:
            mark.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - the job's own failure
            failure = exc
        mark.cancel()
        await self._finish(delivery, run, result, failure)

    async def _finish(
        self, delivery: Delivery, run: Run, result: Any, failure: BaseException | None
    ) -> None:
        """Store the outcome of a run (after its ``running`` record, if one was written)
        and settle the message."""
        if delivery.running_write is not None:
            await delivery.running_write  # the outcome must be the last write
        if failure is not None:
            if isinstance(failure, KeyboardInterrupt | SystemExit):
                failure = RuntimeError(f"job raised {type(failure).__name__}")
            await self._failed(delivery, run, failure)
            return
        record = self._completed_record(delivery, run, result)
        await self._store(record, run.envelope)
        self._acknowledge(delivery)

    def _acknowledge(self, delivery: Delivery) -> None:
        """Ack a job whose completed record is stored."""
        self._settle(delivery, ACK)
        self.w.jobs_done += 1

    def _begin(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        attempt: int,
        history: list[AttemptRecord],
    ) -> tuple[Run, DelayedCall]:
        """Start a run: its context, and its ``running`` record due after
        RUNNING_WRITE_DELAY (cancel the returned call when the function returns). A job
        that finishes sooner goes straight from pending to its outcome: one record write
        instead of two on the hot path."""
        ctx = JobContext(
            job_id=envelope.id,
            attempt=attempt,
            queue_name=envelope.queue,
            _progress_sink=self.w.report_progress,
        )
        run = delivery.run = Run(envelope, attempt, history, ctx)
        return run, self.w.running_marks.add(lambda: self._mark_running(delivery, run))

    def _mark_running(self, delivery: Delivery, run: Run) -> None:
        """Write the ``running`` record of a job still running after RUNNING_WRITE_DELAY."""
        running = self._run_record(delivery, run, JobStatus.RUNNING)
        running.progress, running.progress_message = run.ctx.progress, run.ctx.progress_message
        delivery.running_write = self.w.write_running(
            run.envelope.id, encode(running), self._ttl(run.envelope)
        )

    def _completed_record(self, delivery: Delivery, run: Run, result: Any) -> JobRecord:
        record = self._run_record(delivery, run, JobStatus.COMPLETED)
        record.finished_at = time.time()
        record.result = result
        record.progress, record.progress_message = 1.0, run.ctx.progress_message
        record.attempts[-1].finished_at = record.finished_at
        return record

    async def _failed(self, delivery: Delivery, run: Run, exc: BaseException) -> None:
        w = self.w
        envelope, attempt = run.envelope, run.attempt
        decision = decide(envelope, attempt, exc)
        now = time.time()
        status = JobStatus.RETRYING if decision.retry else JobStatus.FAILED
        record = self._run_record(delivery, run, status)
        last = record.attempts[-1]
        last.finished_at = now
        last.error_type = _qualified(exc)
        last.error = str(exc) or type(exc).__name__
        tb = "".join(traceback.format_exception(exc))[-8000:]
        last.traceback = tb
        record.error_type, record.error, record.traceback = last.error_type, last.error, tb
        if decision.retry:
            record.next_attempt_at = now + decision.delay
            await self._store(record, envelope)
            logger.info(
                "job {} failed (attempt {}): {}; retrying in {:g} s",
                envelope.id,
                attempt,
                last.error,
                decision.delay,
            )
            self._settle(delivery, nak_body(decision.delay))
            return
        record.finished_at = now
        await self._store(record, envelope)
        level = "WARNING" if isinstance(exc, JobTimeoutError | SerializationError) else "INFO"
        logger.log(
            level,
            "job {} failed for good (attempt {}): {} ({})",
            envelope.id,
            attempt,
            last.error,
            decision.reason,
        )
        reason = f"failed: {last.error_type}: {last.error} ({decision.reason})"
        await self._dead_letter(delivery, envelope.queue, reason, "failed", envelope.id)
        self._settle(delivery, ACK)
        w.jobs_failed += 1

    async def _dead(
        self,
        delivery: Delivery,
        queue: str,
        envelope: JobEnvelope | None,
        attempt: int | None,
        kind: str,
        reason: str,
    ) -> None:
        """Record a job that never ran properly, keep its message in the DLQ, remove it."""
        w = self.w
        logger.warning("dead letter on queue {} ({}): {}", queue, kind, reason)
        await self._dead_letter(delivery, queue, reason, kind, envelope.id if envelope else None)
        if envelope is not None:
            now = time.time()
            record = self._record(delivery, envelope, JobStatus.DEAD, attempt or 1, now, [])
            record.finished_at = now
            record.error_type, record.error = f"naq:{kind}", reason
            record.attempts[-1].error_type, record.attempts[-1].error = record.error_type, reason
            await self._store(record, envelope)
        self._settle(delivery, TERM)
        w.jobs_failed += 1

    async def _store(self, record: JobRecord, envelope: JobEnvelope) -> None:
        ttl = self._ttl(envelope)
        store = self.w.results
        try:
            # the common case: straight onto the wire, without the retry machinery
            await store.put_nowait(record, ttl)
        except _TRANSIENT:
            await with_retries(
                f"storing the outcome of {record.job_id}", lambda: store.put(record, ttl)
            )

    async def _dead_letter(
        self, delivery: Delivery, queue: str, reason: str, kind: str, job_id: str | None
    ) -> None:
        msg = delivery.msg
        await with_retries(
            "storing a dead letter",
            lambda: self.w.dead_letters.publish(
                queue=queue,
                payload=msg.data,
                reason=reason,
                kind=kind,
                job_id=job_id,
                original_headers=msg.headers,
                dedupe_key=self._dedupe(delivery),
            ),
        )

    @staticmethod
    def _settle(delivery: Delivery, how: bytes) -> None:
        """Answer the message (``wire.ACK``, ``wire.TERM`` or a ``wire.nak_body``), once."""
        if delivery.settled:
            return
        delivery.settled = True
        reply_to(delivery.msg, how)

    def _record(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        status: JobStatus,
        attempt: int,
        started: float,
        history: list[AttemptRecord],
    ) -> JobRecord:
        attempts = [a for a in history if a.attempt < attempt]
        attempts.append(
            AttemptRecord(attempt=attempt, worker_id=self.w.worker_id, started_at=started)
        )
        return record_for(
            envelope,
            status,
            handed_back=delivery.handed_back,
            suspect_runs=delivery.suspect_runs,
            started_at=started,
            worker_id=self.w.worker_id,
            attempts=attempts,
        )

    def _run_record(self, delivery: Delivery, run: Run, status: JobStatus) -> JobRecord:
        return self._record(delivery, run.envelope, status, run.attempt, run.started, run.history)

    def _ttl(self, envelope: JobEnvelope) -> int:
        return envelope.result_ttl or self.w.settings.result_ttl

    @staticmethod
    def _dedupe(delivery: Delivery) -> str:
        return f"{delivery.seq}-{delivery.delivered}"
