"""One job from fetch to ack, in four steps: **decide** (decode, validate, allow, dedupe),
**run**, **record** (store the outcome), **settle** (ack, nak or term).

The order is the invariant users trust: the outcome (result, failure or dead letter) is
stored before the message is answered. The same steps have two schedulings:

* the fast path, for a plain first delivery: decided on the spot, the function handed to
  the executor, its outcome stored and acked from callbacks (no task of naq's own);
* the task path, for everything else (redeliveries, refusals, failures): a coroutine that
  reads the job's record first (earlier attempts, crash counting) and awaits the same steps.

See ``docs/worker.md`` for the sequence diagram.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from loguru import logger

from ..cancellation import CANCEL_REASON, CANCELLED_BY_REQUEST
from ..codec import to_wire
from ..context import JobContext, ProgressSink
from ..deadletter import DeadLetters
from ..dependencies import Dependencies
from ..errors import (
    JobTimeoutError,
    SerializationError,
    WriteConflictError,
)
from ..expiry import has_expired, mark_expired
from ..functions import FunctionResolver
from ..hooks import HookRunner, JobRun, Outcome
from ..limiting import Denied, Limiter
from ..limits import ConcreteLimit
from ..models import (
    FINAL_STATUS_VALUES,
    AttemptRecord,
    JobEnvelope,
    JobRecord,
    JobStatus,
    encode,
    mark_cancelled,
    record_for,
)
from ..results import ResultStore
from ..settings import Settings
from ..transport import ACK, TERM, nak_body
from .cancels import CancelRequests
from .claims import Replayed, claim
from .counters import Counters
from .decide import Go, Refuse, decide
from .delayed import DelayedCalls
from .delivery import Delivery, Run, State
from .executor import Executor
from .holds import LIMITED, RETRYING, HeldBack
from .job_hooks import ended, job_run, not_run, wants_runs
from .outcomes import MAX_ATTEMPTS, Records, check_fits, qualified
from .retry import decide as retry_decision
from .writer import OutcomeWriter
from .writes import with_retries

T = TypeVar("T")

#: A job still running after this many seconds gets its ``running`` record written.
RUNNING_WRITE_DELAY = 0.02
#: The longest a job held back by a shared limit waits in NATS before it asks again, seconds.
MAX_LIMIT_WAIT = 1.0


@dataclass(slots=True)
class Parts:
    """What the pipeline works with, handed over explicitly by the worker."""

    settings: Settings
    resolver: FunctionResolver
    executor: Executor
    results: ResultStore
    dead_letters: DeadLetters
    records: Records
    running_marks: DelayedCalls
    counters: Counters
    max_crashes: int
    max_payload: Callable[[], int]
    report_progress: ProgressSink
    dependencies: Dependencies
    cancel_requests: CancelRequests
    limits: Callable[[JobEnvelope], list[ConcreteLimit]]  # the shared limits a job takes
    limiter: Limiter
    write_running: Callable[[str, bytes, int], asyncio.Task[None]]
    exclusive: Callable[[], AbstractAsyncContextManager[None]]
    forget: Callable[[Delivery], None]
    hooks: HookRunner
    worker_id: str
    held: HeldBack  # jobs handed back to wait (retry delay, full limit), counted


class JobPipeline:
    """Takes each delivery whose slot is taken through decide, run, record and settle."""

    def __init__(self, parts: Parts) -> None:
        self.p = parts
        self.w = OutcomeWriter(parts)

    # -- entry ------------------------------------------------------------------------------
    def start(self, delivery: Delivery) -> None:
        """Begin processing a delivery whose slot is taken; never raises."""
        p = self.p
        # with signing on, every job first claims its record (replay protection): task path
        if delivery.delivered == 1 and not p.settings.signing_keys:
            verdict = decide(delivery.msg, delivery.queue, p.settings, p.resolver)
            if (
                isinstance(verdict, Go)
                and not verdict.envelope.depends_on
                and verdict.envelope.id not in p.cancel_requests
                and not p.limits(verdict.envelope)
                and (
                    verdict.envelope.expires_at is None
                    or not has_expired(verdict.envelope.expires_at)
                )
                and not p.hooks.awaits("before_job")
            ):
                delivery.job_id = verdict.envelope.id
                if self._launch(delivery, verdict, 1, [], None):
                    return
        delivery.task = asyncio.create_task(self._guarded(delivery, self._slow(delivery)))

    async def _slow(self, delivery: Delivery) -> None:
        """The task path: refusals, redeliveries and crash counting, then the same steps."""
        p = self.p
        verdict = decide(delivery.msg, delivery.queue, p.settings, p.resolver)
        attempt, history = delivery.delivered, []
        envelope = verdict.envelope
        if envelope is not None:
            delivery.job_id = envelope.id
        claimed: JobRecord | None = None
        if envelope is not None and p.settings.signing_keys:
            claimed = await self._claim(delivery, envelope)
            if delivery.settled:  # a replay: dead-lettered
                return
            if (
                claimed is not None
                and claimed.claimed_seq is None
                and claimed.status == JobStatus.CANCELLED.value
            ):
                # cancelled before it ever started (and no cancel request held any more)
                await self._skip_cancelled(delivery, envelope, attempt, [])
                return
        if envelope is not None and delivery.delivered > 1:
            # earlier attempts' errors, and deliveries handed back at shutdown (not attempts)
            if p.settings.signing_keys:
                previous = claimed  # read (and claimed) just now
            else:
                previous = await p.results.get(envelope.id)
            if previous is not None and previous.status in FINAL_STATUS_VALUES:
                # its outcome is stored: the worker that stored it died (or lost the
                # connection) before its ack arrived. Nothing to run again.
                logger.info("job {} is {} already; acknowledging", envelope.id, previous.status)
                # its worker may have died while handing the outcome to its dependants
                await self.w.after_final(envelope, previous.status, redelivered=True)
                delivery.settle(ACK)
                return
            if previous is not None:
                history = list(previous.attempts)
                delivery.handed_back = previous.handed_back
                delivery.suspect_runs = previous.suspect_runs
                delivery.limit_waits = previous.limit_waits
                # deliveries handed back at shutdown or sent back for a full limit are not
                # attempts
                attempt = max(1, delivery.delivered - previous.handed_back - previous.limit_waits)
            # Delivered again without a recorded outcome or retry: its worker died (or lost
            # it) while it ran. Run it alone, so a job that kills workers cannot get the
            # healthy jobs that shared the worker with it counted as crash loops too.
            retrying = previous is not None and previous.status == JobStatus.RETRYING.value
            delivery.suspect = attempt > 1 and not retrying
        if isinstance(verdict, Refuse):
            await self._refuse(delivery, verdict, attempt)
            return
        if verdict.envelope.id in p.cancel_requests:
            await self._skip_cancelled(delivery, verdict.envelope, attempt, history)
            return
        if has_expired(verdict.envelope.expires_at):
            await self._skip_expired(delivery, verdict.envelope, history)
            return
        if delivery.suspect and delivery.suspect_runs >= p.max_crashes:
            reason = (
                f"its worker died while running it {delivery.suspect_runs + 1} times "
                f"(it ran alone after the first; limit max_crashes={p.max_crashes})"
            )
            await self._refuse(delivery, Refuse("crash_loop", reason, verdict.envelope), attempt)
            return
        go = verdict
        limits = p.limits(go.envelope)
        if limits:
            taken = await with_retries(
                f"taking the limits of job {go.envelope.id}", lambda: p.limiter.acquire(limits)
            )
            if isinstance(taken, Denied):
                if go.envelope.id in p.cancel_requests:  # asked while the limits were read
                    await self._skip_cancelled(delivery, go.envelope, attempt, history)
                    return
                await self._wait_for_limit(delivery, go.envelope, taken, history)
                return
            delivery.permit = taken
        finished = asyncio.get_running_loop().create_future()
        if go.envelope.depends_on:
            go.dependency_results = await with_retries(
                f"reading the results job {go.envelope.id} depends on",
                lambda: p.dependencies.results_of(go.envelope.depends_on),
            )
        hook = None
        if p.hooks.awaits("before_job"):
            hook = job_run(go.envelope, attempt, p.worker_id, go.args, go.kwargs)
            await p.hooks.fire_awaiting("before_job", hook)
        if not delivery.suspect:
            if self._launch(delivery, verdict, attempt, history, finished, hook):
                await finished
            return
        async with p.exclusive():
            if has_expired(verdict.envelope.expires_at):  # it waited for the others to end
                await self._skip_expired(delivery, verdict.envelope, history)
                return
            # counted before it runs: if it kills this worker too, the next one knows
            delivery.suspect_runs += 1
            now = time.time()
            running = self._stamp(
                delivery,
                p.records.record(
                    delivery, verdict.envelope, JobStatus.RUNNING, attempt, now, history
                ),
            )
            await self.w.store(running.job_id, encode(running), p.records.ttl(verdict.envelope))
            if self._launch(delivery, verdict, attempt, history, finished, hook):
                await finished

    async def _claim(self, delivery: Delivery, envelope: JobEnvelope) -> JobRecord | None:
        """Claim the job of a signed message (see :mod:`naq.worker.claims`): its record as
        claimed, or dead-letter the message as a replay (then ``delivery`` is settled)."""
        p = self.p
        outcome = await with_retries(
            f"claiming job {envelope.id}",
            lambda: claim(
                p.results,
                envelope,
                delivery.seq,
                size=len(delivery.msg.data),
                ttl=p.records.ttl(envelope),
            ),
        )
        if isinstance(outcome, Replayed):
            # the job's record belongs to the message that claimed it: left untouched
            await self._refuse(delivery, Refuse("replayed", outcome.reason), delivery.delivered)
            return None
        return outcome.record

    def _stamp(self, delivery: Delivery, record: JobRecord) -> JobRecord:
        """``record`` keeping the claim of ``delivery``'s message (signing on)."""
        if self.p.settings.signing_keys:
            record.claimed_seq = delivery.seq
        return record

    async def _guarded(self, delivery: Delivery, work: Awaitable[None]) -> None:
        """Await ``work`` for ``delivery``; an internal error still ends the message (dead
        letter), so no message is redelivered forever."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - last resort
            logger.exception("internal error processing a message: {}", exc)
            if not delivery.settled:
                await self._internal_error(delivery, exc)
        finally:
            if not delivery.slot_handed:
                self.p.executor.release()
            self.p.forget(delivery)

    # -- run --------------------------------------------------------------------------------
    def _launch(
        self,
        delivery: Delivery,
        go: Go,
        attempt: int,
        history: list[AttemptRecord],
        finished: asyncio.Future[None] | None,
        hook: JobRun | None = None,
    ) -> bool:
        """Hand the function to the executor; its end is taken to :meth:`_ran`. False if the
        executor could not take it (shut down): nothing was started then. ``hook``: its
        :class:`JobRun`, when ``before_job`` ran already (awaited)."""
        p = self.p
        envelope = go.envelope
        ctx = JobContext(
            job_id=envelope.id,
            attempt=attempt,
            queue_name=envelope.queue,
            dependency_results=go.dependency_results,
            headers=envelope.headers,
            _progress_sink=p.report_progress,
        )
        run = delivery.run = Run(envelope, attempt, history, ctx)
        if hook is None and wants_runs(p.hooks):
            hook = job_run(envelope, attempt, p.worker_id, go.args, go.kwargs)
            p.hooks.fire("before_job", hook)
        run.hook = hook
        began = time.monotonic()
        if hook is not None:
            hook.started_at = run.started
        mark = p.running_marks.add(lambda: self._mark_running(delivery, run))

        def done(value: Any, error: BaseException | None) -> None:
            mark.cancel()
            if run.hook is not None:
                run.hook.duration = time.monotonic() - began
                run.hook.result = value
            self._ran(delivery, run, value, error, finished)

        delivery.slot_handed = True
        delivery.state = State.RUNNING
        try:
            if p.executor.is_async(go.func):
                delivery.job_task = p.executor.submit_async(
                    go.func, go.args, go.kwargs, ctx, envelope.timeout, done
                )
            else:
                p.executor.submit(go.func, go.args, go.kwargs, ctx, envelope.timeout, done)
        except Exception:  # noqa: BLE001 - e.g. the pool is shut down
            mark.cancel()
            delivery.slot_handed = False
            delivery.state = State.HELD
            ended(p.hooks, hook, Outcome.HANDED_BACK)  # before_job ran: close the run
            return False
        if envelope.id in p.cancel_requests:  # asked while it was being prepared
            delivery.request_cancel()
        return True

    def _mark_running(self, delivery: Delivery, run: Run) -> None:
        """Write the ``running`` record of a job still running after RUNNING_WRITE_DELAY."""
        running = self._stamp(delivery, self.p.records.running(delivery, run))
        delivery.running_write = self.p.write_running(
            run.envelope.id, encode(running), self.p.records.ttl(run.envelope)
        )

    # -- record and settle ------------------------------------------------------------------
    def _ran(
        self,
        delivery: Delivery,
        run: Run,
        value: Any,
        error: BaseException | None,
        finished: asyncio.Future[None] | None,
    ) -> None:
        """The function ended (on the loop): store its outcome, then settle."""
        if delivery.cancel_requested and not delivery.settled:
            work = self._cancelled(delivery, run)
            delivery.task = asyncio.create_task(self._finish_guarded(delivery, work, finished))
            return
        if delivery.settled or isinstance(error, asyncio.CancelledError):
            # handed back at shutdown while it ran, or stopped with the worker: the next
            # delivery runs it
            ended(self.p.hooks, run.hook, Outcome.HANDED_BACK)
            self._done(delivery, finished)
            return
        p = self.p
        data = b""
        if error is None:
            try:
                result = to_wire(value, what="result")
                completed = self._stamp(delivery, p.records.completed(delivery, run, result))
                data = check_fits(completed, p.max_payload)
            except Exception as exc:  # noqa: BLE001 - an unstorable result fails the job
                error = exc
        if error is not None or delivery.running_write is not None or run.envelope.depends_on:
            # the task path: a failure, a running record to wait for, or dependency edges
            # to remove once the outcome is stored
            work = self._finish(delivery, run, data, error)
            delivery.task = asyncio.create_task(self._finish_guarded(delivery, work, finished))
            return
        try:
            stored = p.results.put_final_nowait(run.envelope.id, data, p.records.ttl(run.envelope))
        except Exception:  # noqa: BLE001 - reconnecting: store with retries in a task
            work = self._finish(delivery, run, data, None)
            delivery.task = asyncio.create_task(self._finish_guarded(delivery, work, finished))
            return
        stored.add_done_callback(lambda f: self._stored(delivery, run, data, f, finished))

    def _stored(
        self,
        delivery: Delivery,
        run: Run,
        data: bytes,
        stored: asyncio.Future[int],
        finished: asyncio.Future[None] | None,
    ) -> None:
        if stored.cancelled() or stored.exception() is not None:
            # refused because others depend on it, or to be retried (or reported) there
            refused = not stored.cancelled() and isinstance(stored.exception(), WriteConflictError)
            work = self._finish(delivery, run, data, None, refused=refused)
            delivery.task = asyncio.create_task(self._finish_guarded(delivery, work, finished))
            return
        try:
            self._acknowledge(delivery)
        except Exception as exc:  # noqa: BLE001 - closed meanwhile: redelivered, then skipped
            logger.debug("ack of {} failed: {}", run.envelope.id, exc)
        ended(self.p.hooks, run.hook, Outcome.COMPLETED)
        self._done(delivery, finished)

    async def _finish_guarded(
        self, delivery: Delivery, work: Awaitable[None], finished: asyncio.Future[None] | None
    ) -> None:
        try:
            await self._guarded(delivery, work)
        finally:
            self._done(delivery, finished)

    def _done(self, delivery: Delivery, finished: asyncio.Future[None] | None) -> None:
        if finished is not None and not finished.done():
            finished.set_result(None)
        self.p.forget(delivery)

    async def _finish(
        self,
        delivery: Delivery,
        run: Run,
        data: bytes,
        failure: BaseException | None,
        *,
        refused: bool = False,
    ) -> None:
        """Store the outcome of a run (after its ``running`` record, if one was written)
        and settle the message. ``refused``: its conditional write was refused already
        (others depend on it)."""
        if delivery.running_write is not None:
            await delivery.running_write  # the outcome must be the last write
        if failure is not None:
            if isinstance(failure, KeyboardInterrupt | SystemExit):
                failure = RuntimeError(f"job raised {type(failure).__name__}")
            await self._failed(delivery, run, failure)
            return
        await self.w.store_final(run.envelope, data, JobStatus.COMPLETED, refused=refused)
        self._acknowledge(delivery)
        ended(self.p.hooks, run.hook, Outcome.COMPLETED)

    def _acknowledge(self, delivery: Delivery) -> None:
        """Ack a job whose completed record is stored."""
        delivery.settle(ACK)
        self.p.counters.add_done(delivery.queue)

    async def _failed(self, delivery: Delivery, run: Run, exc: BaseException) -> None:
        p = self.p
        envelope, attempt = run.envelope, run.attempt
        decision = retry_decision(envelope, attempt, exc)
        retry_at = time.time() + decision.delay if decision.retry else None
        record = self._stamp(delivery, p.records.failed(delivery, run, exc, retry_at))
        if decision.retry:
            await self.w.store(record.job_id, encode(record), p.records.ttl(envelope))
        else:
            await self.w.store_final(envelope, encode(record), JobStatus.FAILED)
        last = record.attempts[-1]
        log = logger.bind(job_id=envelope.id, queue=envelope.queue, attempt=attempt)
        if decision.retry:
            log.info(
                "job {} failed (attempt {}): {}; retrying in {:g} s",
                envelope.id,
                attempt,
                last.error,
                decision.delay,
            )
            # before the hand-back: its events are stored before it can run again
            ended(p.hooks, run.hook, Outcome.RETRYING, error=exc, retry_in=decision.delay)
            delivery.settle(nak_body(decision.delay))
            p.held.add(delivery.queue, RETRYING, decision.delay)
            return
        level = "WARNING" if isinstance(exc, JobTimeoutError | SerializationError) else "INFO"
        log.log(
            level,
            "job {} failed for good (attempt {}): {} ({})",
            envelope.id,
            attempt,
            last.error,
            decision.reason,
        )
        reason = f"failed: {last.error_type}: {last.error} ({decision.reason})"
        await self.w.dead_letter(delivery, reason, "failed", envelope.id)
        delivery.settle(ACK)
        p.counters.add_failed(delivery.queue)
        ended(p.hooks, run.hook, Outcome.FAILED, error=exc, reason=decision.reason)

    async def _refuse(self, delivery: Delivery, refusal: Refuse, attempt: int) -> None:
        """Keep a message that must not run in the dead-letter stream, record its job as
        ``dead`` (only when its envelope is trustworthy), and remove it from the queue."""
        p = self.p
        envelope = refusal.envelope
        logger.bind(
            job_id=envelope.id if envelope is not None else None, queue=delivery.queue
        ).warning("dead letter on queue {} ({}): {}", delivery.queue, refusal.kind, refusal.reason)
        job_id = envelope.id if envelope is not None else None
        await self.w.dead_letter(delivery, refusal.reason, refusal.kind, job_id)
        if envelope is not None:
            record = self._stamp(
                delivery,
                p.records.dead(delivery, envelope, attempt or 1, refusal.kind, refusal.reason),
            )
            await self.w.store_final(envelope, encode(record), JobStatus.DEAD)
        delivery.settle(TERM)
        p.counters.add_failed(delivery.queue)
        self._not_run("on_dead", delivery, envelope, attempt or 1, refusal.reason)

    async def _internal_error(self, delivery: Delivery, exc: BaseException) -> None:
        """Dead-letter a message naq itself failed on (with nothing of it but its bytes);
        only when even that fails (NATS unreachable) is it handed back for later."""
        try:
            await asyncio.wait_for(
                self.p.dead_letters.publish(
                    queue=delivery.queue,
                    payload=delivery.msg.data,
                    reason=f"internal error: {qualified(exc)}: {exc}",
                    kind="internal_error",
                    dedupe_key=delivery.dedupe_key(),
                ),
                10.0,
            )
            delivery.settle(TERM)
            self.p.counters.add_failed(delivery.queue)
            self._not_run("on_dead", delivery, None, delivery.delivered, f"internal error: {exc}")
        except Exception as again:  # noqa: BLE001 - NATS is away: try again later
            logger.warning("could not dead-letter it either ({}); handing it back", again)
            try:
                delivery.settle(nak_body(5))
            except Exception:  # noqa: BLE001 - the connection is gone; redelivered anyway
                pass

    async def _cancelled(self, delivery: Delivery, run: Run) -> None:
        """Record a run stopped by ``cancel_job`` as cancelled, and settle it."""
        if delivery.running_write is not None:
            await delivery.running_write  # the outcome must be the last write
        record = mark_cancelled(
            self._stamp(delivery, self.p.records.of_run(delivery, run, JobStatus.CANCELLED)),
            CANCELLED_BY_REQUEST,
            CANCEL_REASON,
        )
        record.attempts[-1].finished_at = record.finished_at
        await self.w.store_final(run.envelope, encode(record), JobStatus.CANCELLED)
        logger.bind(job_id=run.envelope.id).info("job {} cancelled while running", record.job_id)
        delivery.settle(ACK)
        ended(self.p.hooks, run.hook, Outcome.CANCELLED, reason=CANCEL_REASON)
        await self.w.forget_request(run.envelope.id)

    async def _skip_cancelled(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        attempt: int,
        history: list[AttemptRecord],
    ) -> None:
        """A job whose cancellation was asked before it started: never run, recorded
        ``cancelled``, acknowledged."""
        record = mark_cancelled(
            record_for(
                envelope,
                JobStatus.CANCELLED,
                size=len(delivery.msg.data),
                attempts=history[-MAX_ATTEMPTS:],
            ),
            CANCELLED_BY_REQUEST,
            CANCEL_REASON,
        )
        await self.w.store_final(
            envelope, encode(self._stamp(delivery, record)), JobStatus.CANCELLED
        )
        logger.bind(job_id=envelope.id).info("job {} was cancelled; not running it", envelope.id)
        delivery.settle(ACK)
        self._not_run("on_cancel", delivery, envelope, attempt, CANCEL_REASON)
        await self.w.forget_request(envelope.id)

    async def _skip_expired(
        self, delivery: Delivery, envelope: JobEnvelope, history: list[AttemptRecord]
    ) -> None:
        """A job not started by its ``expires_at``: never run (nor run again), recorded
        ``cancelled`` as expired (its dependants are cancelled too), acknowledged."""
        record = mark_expired(
            record_for(
                envelope,
                JobStatus.CANCELLED,
                size=len(delivery.msg.data),
                attempts=history[-MAX_ATTEMPTS:],
            )
        )
        await self.w.store_final(
            envelope, encode(self._stamp(delivery, record)), JobStatus.CANCELLED
        )
        logger.bind(job_id=envelope.id).info(
            "job {} was not started in time ({}); not running it", envelope.id, record.error
        )
        delivery.settle(ACK)
        self._not_run("on_cancel", delivery, envelope, len(history) + 1, record.error or "")

    async def _wait_for_limit(
        self,
        delivery: Delivery,
        envelope: JobEnvelope,
        denied: Denied,
        history: list[AttemptRecord],
    ) -> None:
        """A shared limit is full: send the job back to wait in NATS (no slot held, no
        attempt counted), its record saying what it waits for."""
        record = record_for(
            envelope,
            JobStatus.PENDING,
            size=len(delivery.msg.data),
            attempts=history[-MAX_ATTEMPTS:],
            handed_back=delivery.handed_back,
            suspect_runs=delivery.suspect_runs,
            limit_waits=delivery.limit_waits + 1,
            waiting_for=denied.describe(),
        )
        self._stamp(delivery, record)
        await self.w.store(record.job_id, encode(record), self.p.records.ttl(envelope))
        # back when the limit may have room (at most a second: a limit raised or deleted
        # meanwhile applies that soon), with a little jitter so jobs sent back together do
        # not all come back at once
        delay = min(denied.retry_in, MAX_LIMIT_WAIT) * (1 + 0.2 * random.random()) + 0.005
        delivery.settle(nak_body(delay))
        self.p.held.add(delivery.queue, LIMITED, delay)

    def _not_run(
        self,
        name: str,
        delivery: Delivery,
        envelope: JobEnvelope | None,
        attempt: int,
        reason: str,
    ) -> None:
        not_run(
            self.p.hooks,
            name,
            envelope=envelope,
            queue=delivery.queue,
            worker_id=self.p.worker_id,
            attempt=attempt,
            reason=reason,
        )
