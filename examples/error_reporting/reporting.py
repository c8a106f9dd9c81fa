"""Sentry error reporting for naq jobs, as a :class:`naq.Middleware`.

Register it on the worker (``naq.Worker(hooks=[SentryReporting()])``) or globally
(``naq.add_middleware(SentryReporting())``) after ``sentry_sdk.init(...)``:

* a job that failed for good (``on_failure``: no retry left) is sent as its exception,
* a message refused without running (``on_dead``: a function the worker may not run, an
  undecodable message, a crash loop) is sent as a message naming the reason,

each tagged with the queue, job id, attempt and function, and with the run's details in a
``naq`` context. Retries are not sent (the job may still succeed); pass
``report_retries=True`` to send them too, at warning level.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk

import naq


def job_tags(run: naq.JobRun) -> dict[str, str]:
    """The Sentry tags of a run: short strings to search and group by."""
    return {
        "naq.queue": run.queue,
        "naq.job_id": run.job_id or "-",
        "naq.attempt": str(run.attempt),
        "naq.function": run.function or "-",
        "naq.outcome": run.outcome or "-",
    }


def job_context(run: naq.JobRun) -> dict[str, Any]:
    """The run's details shown on the Sentry event (not searchable)."""
    return {
        "job_id": run.job_id,
        "queue": run.queue,
        "function": run.function,
        "attempt": run.attempt,
        "worker_id": run.worker_id,
        "outcome": run.outcome,
        "reason": run.reason,
        "duration_s": run.duration,
        "args": repr(run.args)[:200],
        "kwargs": repr(run.kwargs)[:200],
    }


class SentryReporting(naq.Middleware):
    """Sends failed jobs and dead letters to Sentry (see the module docstring)."""

    def __init__(self, report_retries: bool = False) -> None:
        self.report_retries = report_retries

    def on_failure(self, run: naq.JobRun) -> None:
        """A job failed for good: send its exception."""
        self._send_exception(run, "error")

    def on_retry(self, run: naq.JobRun) -> None:
        """A job failed and runs again: sent only with ``report_retries``."""
        if self.report_retries:
            self._send_exception(run, "warning")

    def on_dead(self, run: naq.JobRun) -> None:
        """A message was refused without running: send why."""
        what = run.function or "an undecodable message"
        sentry_sdk.capture_message(
            f"naq dead letter: {what}",
            level="error",
            tags=job_tags(run),
            contexts={"naq": job_context(run)},
        )

    @staticmethod
    def _send_exception(run: naq.JobRun, level: str) -> None:
        if run.error is None:
            return
        sentry_sdk.capture_exception(
            run.error,
            level=level,
            tags=job_tags(run),
            contexts={"naq": job_context(run)},
            # one Sentry issue per function and error type, whatever the message says
            fingerprint=["naq", run.function, type(run.error).__name__],
        )
