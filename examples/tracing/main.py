"""Runnable example: OpenTelemetry spans for naq jobs, linked from enqueue to run.

    python examples/tracing/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://host:4222 python examples/tracing/main.py
    python examples/tracing/main.py --console  # also print every span as OpenTelemetry JSON

It enqueues three jobs (one fails, is retried once, and fails again) with the
:class:`~tracing.TracingMiddleware` on the queue, runs a burst worker with the same
middleware, then prints each job's spans: the producer span of its enqueue and one consumer
span per attempt, each a child of that producer span (same trace id) - the link made only
through the job's headers. One ``JOB-TRACE {json}`` line per job says the same for programs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tasks
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from tracing import ATTEMPT, MESSAGE_ID, OUTCOME, TracingMiddleware

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "tracing-example"


def tracer_provider(exporter: InMemorySpanExporter, console: bool) -> TracerProvider:
    """An SDK tracer provider that keeps finished spans in ``exporter`` (and prints them)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "naq-tracing-example"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider


async def run_jobs(nats_url: str, middleware: TracingMiddleware) -> list[naq.Job]:
    """Enqueue the example's jobs, then work them off with a burst worker."""
    async with naq.Queue(QUEUE, nats_url=nats_url, hooks=[middleware]) as queue:
        jobs = [
            await queue.enqueue(tasks.price, "apple", 4),
            await queue.enqueue(tasks.slow_total, ["apple", "pear"]),
            await queue.enqueue(tasks.price, "durian", 1, max_retries=1, retry_delay=0.2),
        ]
    print(f"enqueued {len(jobs)} jobs on {QUEUE!r}; running a burst worker ...")
    worker = naq.Worker(
        [QUEUE],
        nats_url=nats_url,
        burst=True,
        concurrency=4,
        hooks=[middleware],
        module_paths=[str(HERE)],  # where the worker finds `tasks`
    )
    await worker.run()
    return jobs


def span_summary(span: ReadableSpan) -> dict[str, Any]:
    """The ids, kind and outcome of ``span``."""
    context = span.get_span_context()
    assert context is not None
    attributes = span.attributes or {}
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
        "parent_id": format_span_id(span.parent.span_id) if span.parent else None,
        "attempt": attributes.get(ATTEMPT),
        "outcome": attributes.get(OUTCOME),
        "status": span.status.status_code.name,
    }


def job_trace(job: naq.Job, spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """``job``'s producer span and consumer spans, and whether they are linked."""
    mine = [s for s in spans if (s.attributes or {}).get(MESSAGE_ID) == job.job_id]
    producers = [span_summary(s) for s in mine if s.kind == SpanKind.PRODUCER]
    consumers = [span_summary(s) for s in mine if s.kind == SpanKind.CONSUMER]
    consumers.sort(key=lambda s: s["attempt"] or 0)
    linked = (
        len(producers) == 1
        and bool(consumers)
        and all(
            c["trace_id"] == producers[0]["trace_id"] and c["parent_id"] == producers[0]["span_id"]
            for c in consumers
        )
    )
    return {
        "job_id": job.job_id,
        "function": job.function,
        "producer": producers[0] if len(producers) == 1 else None,
        "consumers": consumers,
        "linked": linked,
    }


def print_trace(trace: dict[str, Any]) -> None:
    """A job's spans for people."""
    print(f"\njob {trace['job_id']}  {trace['function']}")
    producer = trace["producer"]
    if producer is not None:
        print(
            f"  PRODUCER {producer['name']:<28} trace {producer['trace_id']}"
            f"  span {producer['span_id']}"
        )
    for consumer in trace["consumers"]:
        print(
            f"  CONSUMER {consumer['name']:<28} trace {consumer['trace_id']}"
            f"  parent {consumer['parent_id']}  attempt {consumer['attempt']}"
            f"  {consumer['outcome']} ({consumer['status']})"
        )
    print("  linked: " + ("yes, same trace, parent = producer span" if trace["linked"] else "NO"))


async def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; 0 if every job's consumer spans are children of its producer span."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--console", action="store_true", help="also print spans as JSON")
    options = parser.parse_args(argv)
    exporter = InMemorySpanExporter()
    provider = tracer_provider(exporter, options.console)
    middleware = TracingMiddleware(provider)
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL")
        if not nats_url:
            nats_url = stack.enter_context(EmbeddedServer()).url
        print(f"naq tracing example: NATS at {nats_url}")
        jobs = await run_jobs(nats_url, middleware)
    provider.shutdown()
    traces = [job_trace(job, exporter.get_finished_spans()) for job in jobs]
    for trace in traces:
        print_trace(trace)
    print()
    for trace in traces:
        print("JOB-TRACE " + json.dumps(trace, sort_keys=True))
    return 0 if all(t["linked"] for t in traces) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
