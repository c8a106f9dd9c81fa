"""The worker's side of :mod:`naq.hooks`: the :class:`~naq.hooks.JobRun` of each run and the
hooks fired when it ends, is refused or is cancelled before it starts."""

from __future__ import annotations

from typing import Any

from ..hooks import HookRunner, JobRun, Outcome
from ..models import JobEnvelope

#: Hooks that get a run's :class:`JobRun` (one is built per run only if any is registered).
RUN_HOOKS = ("before_job", "after_job", "on_retry", "on_failure", "on_progress")


def wants_runs(hooks: HookRunner) -> bool:
    """Whether runs need a :class:`JobRun` (a hook that gets one is registered)."""
    return hooks.has_any(RUN_HOOKS)


def job_run(
    envelope: JobEnvelope,
    attempt: int,
    worker_id: str,
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
) -> JobRun:
    """The :class:`JobRun` of one run (or refusal) of ``envelope``'s job."""
    return JobRun(
        job_id=envelope.id,
        queue=envelope.queue,
        function=envelope.fn,
        args=tuple(args),
        kwargs=kwargs if kwargs is not None else {},
        attempt=attempt,
        worker_id=worker_id,
        headers=envelope.headers,
        enqueued_at=envelope.enqueued_at,
    )


def ended(
    hooks: HookRunner,
    run: JobRun | None,
    outcome: str,
    *,
    error: BaseException | None = None,
    reason: str | None = None,
    retry_in: float | None = None,
) -> None:
    """A run ended with ``outcome`` (stored): ``after_job``, then ``on_retry`` or
    ``on_failure`` for those outcomes."""
    if run is None:
        return
    run.outcome, run.error, run.reason, run.retry_in = outcome, error, reason, retry_in
    hooks.fire("after_job", run)
    if outcome == Outcome.RETRYING:
        hooks.fire("on_retry", run)
    elif outcome == Outcome.FAILED:
        hooks.fire("on_failure", run)


def not_run(
    hooks: HookRunner,
    name: str,
    *,
    envelope: JobEnvelope | None,
    queue: str,
    worker_id: str,
    attempt: int,
    reason: str,
) -> None:
    """A job was refused (``on_dead``) or cancelled before it started (``on_cancel``)."""
    if not hooks.has(name):
        return
    if envelope is not None:
        run = job_run(envelope, attempt, worker_id)
    else:  # undecodable: nothing of it is known but its queue
        run = JobRun(
            job_id=None, queue=queue, function="", args=(), kwargs={}, attempt=attempt,
            worker_id=worker_id,
        )  # fmt: skip
    run.outcome = Outcome.DEAD if name == "on_dead" else Outcome.CANCELLED
    run.reason = reason
    hooks.fire(name, run)
