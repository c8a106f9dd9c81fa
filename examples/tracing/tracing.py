"""OpenTelemetry tracing for naq jobs, as a :class:`naq.Middleware`.

Register one instance on the producer's queue and on the worker (or globally with
``naq.add_middleware``). Each enqueue gets a PRODUCER span ("publish <queue>") whose W3C trace
context is written into ``job.headers``; the headers travel with the job, and each run of the
job gets a CONSUMER span ("process <queue>") whose parent is that producer span: one trace
from the enqueue to every attempt, even across processes and hosts.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

import naq

#: Attribute names of the OpenTelemetry messaging conventions, plus naq's own.
SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
OPERATION = "messaging.operation.type"
FUNCTION = "naq.function"
ATTEMPT = "naq.attempt"
OUTCOME = "naq.outcome"
WORKER = "naq.worker_id"

#: Where a run's consumer span is kept in ``run.state`` from ``before_job`` to ``after_job``.
SPAN_KEY = "otel.span"

#: Outcomes that are errors on a consumer span.
_ERROR_OUTCOMES = frozenset({naq.Outcome.FAILED, naq.Outcome.RETRYING, naq.Outcome.DEAD})


class TracingMiddleware(naq.Middleware):
    """Producer and consumer spans for naq jobs, linked through the job's headers."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("naq.examples.tracing", tracer_provider=tracer_provider)
        #: producer spans between before_enqueue and after_enqueue, by job id
        self._publishing: dict[str, Span] = {}

    # -- producer side ----------------------------------------------------------------
    def before_enqueue(self, job: naq.Job) -> None:
        """Start the PRODUCER span (a child of the caller's current span, if any) and put
        its trace context into the job's headers."""
        span = self.tracer.start_span(
            f"publish {job.queue_name}",
            kind=SpanKind.PRODUCER,
            attributes={
                SYSTEM: "naq",
                DESTINATION: job.queue_name,
                MESSAGE_ID: job.job_id,
                OPERATION: "publish",
                FUNCTION: job.function,
            },
        )
        propagate.inject(job.headers, context=trace.set_span_in_context(span))
        self._publishing[job.job_id] = span

    def after_enqueue(self, job: naq.Job) -> None:
        """The job is stored: end its PRODUCER span."""
        span = self._publishing.pop(job.job_id, None)
        if span is not None:
            span.end()

    # -- worker side ------------------------------------------------------------------
    def before_job(self, run: naq.JobRun) -> None:
        """Start the run's CONSUMER span, a child of the producer span in ``run.headers``."""
        run.state[SPAN_KEY] = self._consumer_span(run)

    def after_job(self, run: naq.JobRun) -> None:
        """Set the span's status from the run's outcome, record its exception, end it."""
        span: Span | None = run.state.pop(SPAN_KEY, None)
        if span is None:
            return
        _finish(span, run)

    def on_dead(self, run: naq.JobRun) -> None:
        """A job refused without running (not allowed, undecodable): a CONSUMER span that
        says why, so its trace does not end at the enqueue."""
        _finish(self._consumer_span(run), run)

    def _consumer_span(self, run: naq.JobRun) -> Span:
        parent = propagate.extract(run.headers)
        attributes: dict[str, Any] = {
            SYSTEM: "naq",
            DESTINATION: run.queue,
            OPERATION: "process",
            ATTEMPT: run.attempt,
            WORKER: run.worker_id,
        }
        if run.job_id is not None:
            attributes[MESSAGE_ID] = run.job_id
        if run.function:
            attributes[FUNCTION] = run.function
        return self.tracer.start_span(
            f"process {run.queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )


def _finish(span: Span, run: naq.JobRun) -> None:
    outcome = run.outcome or "unknown"
    span.set_attribute(OUTCOME, outcome)
    if run.error is not None:
        span.record_exception(run.error)
    if outcome in _ERROR_OUTCOMES:
        description = f"{type(run.error).__name__}: {run.error}" if run.error else run.reason
        span.set_status(Status(StatusCode.ERROR, description))
    elif outcome == naq.Outcome.COMPLETED:
        span.set_status(Status(StatusCode.OK))
    span.end()
