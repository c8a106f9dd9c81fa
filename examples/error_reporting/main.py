"""Runnable example: naq job failures and dead letters reported to Sentry, offline.

    python examples/error_reporting/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://host:4222 python examples/error_reporting/main.py

``sentry_sdk.init`` gets a transport that keeps each envelope in memory instead of sending
it, so this runs without a Sentry project. It enqueues a job that succeeds, one that fails
(ValueError, retried once, then failed for good) and one whose function the worker may not
run (``os:getcwd``: dead-lettered without running), runs a burst worker with
:class:`~reporting.SentryReporting`, then prints what would have been sent: one exception
event for the failed job and one message event for the dead letter. One ``SENTRY-EVENT
{json}`` line per event says the same for programs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import sentry_sdk
import tasks
from reporting import SentryReporting
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

import naq
from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent
QUEUE = "error-reporting-example"
#: A well-formed DSN for a project that does not exist: nothing leaves this process.
OFFLINE_DSN = "https://public@sentry.invalid/1"


class KeptEnvelopes(Transport):
    """A Sentry transport that keeps envelopes in a list instead of sending them."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        """Keep ``envelope``."""
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        """The error events kept (not sessions or client reports)."""
        found = (envelope.get_event() for envelope in self.envelopes)
        return [dict(event) for event in found if event is not None]


def event_summary(event: dict[str, Any]) -> dict[str, Any]:
    """What an event says: its exception or message, level and naq tags."""
    exceptions = (event.get("exception") or {}).get("values") or []
    last = exceptions[-1] if exceptions else {}
    message = event.get("message") or (event.get("logentry") or {}).get("message")
    tags = event.get("tags") or {}
    frames = (last.get("stacktrace") or {}).get("frames") or []
    innermost = frames[-1] if frames else {}
    return {
        "kind": "exception" if exceptions else "message",
        "exception_type": last.get("type"),
        "exception_value": last.get("value"),
        "message": message,
        "level": event.get("level"),
        "tags": {k: v for k, v in sorted(tags.items()) if k.startswith("naq.")},
        "reason": ((event.get("contexts") or {}).get("naq") or {}).get("reason"),
        # where it was raised: the innermost frame of its traceback
        "raised_in": innermost.get("function"),
        "raised_at": f"{innermost['filename']}:{innermost['lineno']}" if innermost else None,
    }


async def run_jobs(nats_url: str) -> list[naq.Job]:
    """Enqueue the example's jobs, then work them off with a reporting burst worker."""
    async with naq.Queue(QUEUE, nats_url=nats_url) as queue:
        jobs = [
            await queue.enqueue(tasks.parse_quantity, "12"),
            await queue.enqueue(tasks.parse_quantity, "twelve", max_retries=1, retry_delay=0.1),
            await queue.enqueue("os:getcwd"),  # not the project's code: refused by the worker
        ]
    print(f"enqueued {len(jobs)} jobs on {QUEUE!r}; running a burst worker ...")
    worker = naq.Worker(
        [QUEUE],
        nats_url=nats_url,
        burst=True,
        hooks=[SentryReporting()],
        module_paths=[str(HERE)],  # where the worker finds `tasks`
    )
    await worker.run()
    return jobs


def print_event(summary: dict[str, Any]) -> None:
    """An event for people."""
    if summary["kind"] == "exception":
        print(f"\n[{summary['level']}] {summary['exception_type']}: {summary['exception_value']}")
        print(f"  raised in {summary['raised_in']}() at {summary['raised_at']}")
    else:
        print(f"\n[{summary['level']}] {summary['message']}")
        print(f"  reason: {summary['reason']}")
    for name, value in summary["tags"].items():
        print(f"  {name} = {value}")


async def main() -> int:
    """Run the example; 0 if one exception event and one dead-letter event were captured."""
    transport = KeptEnvelopes()
    sentry_sdk.init(dsn=OFFLINE_DSN, transport=transport, environment="example")
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NAQ_NATS_URL")
        if not nats_url:
            nats_url = stack.enter_context(EmbeddedServer()).url
        print(f"naq error reporting example: NATS at {nats_url}")
        jobs = await run_jobs(nats_url)
    sentry_sdk.flush()
    ours = {job.job_id for job in jobs}
    summaries = [
        s for s in map(event_summary, transport.events()) if s["tags"].get("naq.job_id") in ours
    ]
    print(f"\n{len(summaries)} event(s) would have been sent to Sentry:")
    for summary in summaries:
        print_event(summary)
    print()
    for summary in summaries:
        print("SENTRY-EVENT " + json.dumps(summary, sort_keys=True))
    kinds = sorted(s["kind"] for s in summaries)
    return 0 if kinds == ["exception", "message"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
