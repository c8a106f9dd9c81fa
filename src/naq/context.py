"""``naq.current_job()``: the context of the job running in this task or thread."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError, NaqException

ProgressSink = Callable[[str, float, str | None], None]
#: A progress message longer than this is cut (it is stored in the job's record, which must
#: stay small enough to store).
MAX_PROGRESS_MESSAGE = 1000


@dataclass(slots=True)
class JobContext:
    """What a running job can know and do about itself."""

    job_id: str
    attempt: int
    queue_name: str
    progress: float = 0.0
    progress_message: str | None = None
    #: The return values of the jobs this one depends on (``depends_on``), by job id; a
    #: dependency that did not complete (``allow_failure=True``) is absent.
    dependency_results: dict[str, Any] = field(default_factory=dict)
    #: The headers the job was enqueued with (set by ``before_enqueue`` hooks, e.g. a trace
    #: context the job's own code can continue).
    headers: dict[str, str] = field(default_factory=dict)
    _progress_sink: ProgressSink | None = field(default=None, repr=False)
    _cancel_requested: bool = field(default=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """True once cancellation of this job was asked (timeout, shutdown, cancel)."""
        return self._cancel_requested

    def request_cancel(self) -> None:
        """Tell the job it should stop (it sees :attr:`cancelled`); used by the worker."""
        self._cancel_requested = True

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0..1) and an optional message (cut to 1,000 characters); works in
        sync and async jobs."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ConfigurationError(f"progress must be a number 0..1, got {fraction!r}")
        if not 0.0 <= float(fraction) <= 1.0:
            raise ConfigurationError(f"progress must be between 0 and 1, got {fraction!r}")
        if message is not None:
            message = str(message)[:MAX_PROGRESS_MESSAGE]
        self.progress, self.progress_message = float(fraction), message
        if self._progress_sink is not None:
            self._progress_sink(self.job_id, float(fraction), message)


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "naq_current_job", default=None
)


def current_job() -> JobContext:
    """The context of the job running here; raises outside a job."""
    ctx = _current.get()
    if ctx is None:
        raise NaqException("current_job() called outside a running naq job")
    return ctx


def set_current(ctx: JobContext | None) -> contextvars.Token[JobContext | None]:
    """Bind ``ctx`` in the current context (used by the worker)."""
    return _current.set(ctx)


def reset_current(token: contextvars.Token[JobContext | None]) -> None:
    """Undo :func:`set_current` (a pool thread runs many jobs, one after another)."""
    _current.reset(token)
