"""The public :class:`Job` handle and job options (the info objects lookups return are in
:mod:`naq.info`)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .models import JobStatus
from .names import check_job_id, shown

if TYPE_CHECKING:
    from .queue import Queue

RETRY_STRATEGIES = ("linear", "exponential")

#: Keyword arguments of enqueue-like calls that configure the job and never reach the function.
OPTION_NAMES = frozenset(
    {
        "job_id",
        "max_retries",
        "retry_delay",
        "retry_strategy",
        "retry_on",
        "ignore_on",
        "timeout",
        "result_ttl",
        "depends_on",
        "allow_failure",
        "priority",
        "limits",
        "expires",
    }
)

#: Priorities a job may have: higher starts first.
MIN_PRIORITY, MAX_PRIORITY = 0, 9
#: A limit name a job may take: letters, digits, ``_``, ``-`` and ``:`` (``user:42``).
LIMIT_NAME_RE = re.compile(r"[A-Za-z0-9_:-]{1,128}")
#: The most limits one job may take.
MAX_JOB_LIMITS = 16


def new_job_id() -> str:
    """A fresh random job id (32 hex characters)."""
    return uuid.uuid4().hex


def exception_path(exc_type: type[BaseException]) -> str:
    """``module:qualname`` of an exception class, as matched by ``retry_on``/``ignore_on``."""
    return f"{exc_type.__module__}:{exc_type.__qualname__}"


#: The most jobs one job may depend on (its record lists them, and must stay small).
MAX_DEPENDENCIES = 1000


#: The longest delay, timeout or TTL naq accepts, seconds (a year: the server counts in
#: nanoseconds, and a delay of ``inf`` or ``1e300`` would mean "never").
MAX_SECONDS = 366 * 24 * 3600.0


def _seconds(name: str, value: object, *, allow_none: bool) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigurationError(f"{name} must be a number of seconds, not None")
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{name} must be seconds (int, float or timedelta), not {type(value).__name__}"
        )
    if value != value or value < 0:  # NaN or negative
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
    if value > MAX_SECONDS:
        raise ConfigurationError(
            f"{name} must be at most {MAX_SECONDS:g} seconds (a year), got {value!r}"
        )
    return float(value)


def _exception_types(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, tuple | list | set | frozenset) else (value,)
    paths: list[str] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(f"{name} must hold exception classes, got {item!r}")
        paths.append(exception_path(item))
    return tuple(paths)


def _job_ids(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple | set | frozenset) else (value,)
    ids: list[str] = []
    for item in items:
        job_id = item.job_id if isinstance(item, Job) else item
        check_job_id(job_id, "depends_on job id (depends_on holds job ids or Job objects)")
        if job_id not in ids:
            ids.append(job_id)
    if len(ids) > MAX_DEPENDENCIES:
        raise ConfigurationError(
            f"depends_on holds {len(ids)} jobs; a job may depend on at most {MAX_DEPENDENCIES}"
        )
    return tuple(ids)


def _priority(value: object) -> int:
    if value is None:
        return MIN_PRIORITY
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"priority must be an integer 0 to 9, got {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ConfigurationError(f"priority must be an integer 0 to 9, got {value!r}")
    return value


def _limit_names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple | set | frozenset):
        raise ConfigurationError(f"limits must be a list of limit names, got {value!r}")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str) or not LIMIT_NAME_RE.fullmatch(item):
            raise ConfigurationError(
                f"limit name {shown(item)} is invalid: 1-128 letters, digits, '_', '-' or ':' "
                "(a job names a concrete limit, e.g. 'user:42'; '*' is for set_limit)"
            )
        if item not in names:
            names.append(item)
    if len(names) > MAX_JOB_LIMITS:
        raise ConfigurationError(f"a job may take at most {MAX_JOB_LIMITS} limits")
    return tuple(names)


def _expires_at(value: object) -> float | None:
    """``expires`` (seconds from now, timedelta or aware datetime) as an epoch time."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigurationError(
                f"expires must be an aware datetime (with a time zone), got {value!r}"
            )
        at = value.timestamp()
        if at > time.time() + MAX_SECONDS:
            raise ConfigurationError("expires must be at most a year from now")
        return at
    seconds = _seconds("expires", value, allow_none=False)
    assert seconds is not None
    return time.time() + seconds


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Validated job options (see CONTRACT: every enqueue-like call accepts these)."""

    job_id: str | None = None
    max_retries: int = 0
    retry_delay: float | tuple[float, ...] = 0.0
    retry_strategy: str = "linear"
    retry_on: tuple[str, ...] = ()
    ignore_on: tuple[str, ...] = ()
    timeout: float | None = None
    result_ttl: int | None = None
    depends_on: tuple[str, ...] = ()
    allow_failure: bool = False
    priority: int = 0
    limits: tuple[str, ...] = ()
    expires_at: float | None = None  # epoch seconds: not started by then, never runs

    @classmethod
    def build(cls, raw: Mapping[str, Any]) -> JobOptions:
        """Validate option keywords; raises :class:`ConfigurationError` naming the bad one,
        or an option naq does not know (nothing is stored then)."""
        if not raw.keys() <= OPTION_NAMES:
            unknown = sorted(set(raw) - OPTION_NAMES)
            raise ConfigurationError(
                f"unknown job option(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(OPTION_NAMES))}"
            )
        job_id = raw.get("job_id")
        if job_id is not None:
            check_job_id(job_id)
        max_retries = raw.get("max_retries", 0)
        if max_retries is None:
            max_retries = 0
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        delay_raw = raw.get("retry_delay", 0)
        retry_delay: float | tuple[float, ...]
        if isinstance(delay_raw, list | tuple):
            if not delay_raw:
                raise ConfigurationError("retry_delay list must not be empty")
            retry_delay = tuple(
                _seconds("retry_delay", d, allow_none=False) or 0.0 for d in delay_raw
            )
        else:
            retry_delay = _seconds("retry_delay", delay_raw or 0, allow_none=False) or 0.0
        strategy = raw.get("retry_strategy") or "linear"
        if strategy not in RETRY_STRATEGIES:
            raise ConfigurationError(
                f"retry_strategy must be 'linear' or 'exponential', got {strategy!r}"
            )
        timeout = _seconds("timeout", raw.get("timeout"), allow_none=True)
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {timeout!r}")
        ttl_raw = raw.get("result_ttl")
        result_ttl = _seconds("result_ttl", ttl_raw, allow_none=True)
        if result_ttl is not None and result_ttl < 1:
            raise ConfigurationError(f"result_ttl must be >= 1 second, got {ttl_raw!r}")
        return cls(
            job_id=job_id,
            max_retries=max_retries,
            retry_delay=retry_delay,
            retry_strategy=strategy,
            retry_on=_exception_types("retry_on", raw.get("retry_on")),
            ignore_on=_exception_types("ignore_on", raw.get("ignore_on")),
            timeout=timeout,
            result_ttl=int(result_ttl) if result_ttl is not None else None,
            depends_on=_job_ids(raw.get("depends_on")),
            allow_failure=_flag("allow_failure", raw.get("allow_failure", False)),
            priority=_priority(raw.get("priority")),
            limits=_limit_names(raw.get("limits")),
            expires_at=_expires_at(raw.get("expires")),
        )


def split_options(kwargs: dict[str, Any]) -> tuple[JobOptions, dict[str, Any]]:
    """Separate job options from the function's own keyword arguments."""
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in OPTION_NAMES}
    return JobOptions.build(options), kwargs


#: The blocking result reader behind :meth:`Job.fetch_result_sync`. ``naq.job`` sits below
#: the client API, so the layer that has it (``naq.sync``) hands it down when imported.
_blocking_result_reader: Callable[..., Any] | None = None


def use_blocking_result_reader(reader: Callable[..., Any]) -> None:
    """Set the function :meth:`Job.fetch_result_sync` calls (``naq.sync`` does, once)."""
    global _blocking_result_reader
    _blocking_result_reader = reader


class Job:
    """A job that was enqueued: its id, call and options, and a way to wait for its result."""

    __slots__ = (
        "_queue",
        "args",
        "enqueued_at",
        "function",
        "headers",
        "job_id",
        "kwargs",
        "options",
        "queue_name",
    )

    def __init__(
        self,
        *,
        job_id: str,
        function: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        queue_name: str,
        options: JobOptions,
        enqueued_at: float,
        queue: Queue | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.job_id = job_id
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.queue_name = queue_name
        self.options = options
        self.enqueued_at = enqueued_at
        self._queue = queue
        #: Headers that travel with the job (its envelope, and its message's NATS headers):
        #: e.g. a trace context set by a ``before_enqueue`` hook. Strings only.
        self.headers: dict[str, str] = headers if headers is not None else {}

    max_retries = property(lambda self: self.options.max_retries, doc="Retries allowed.")
    retry_delay = property(lambda self: self.options.retry_delay, doc="Delay between retries.")
    retry_strategy = property(lambda self: self.options.retry_strategy, doc="linear|exponential")
    timeout = property(lambda self: self.options.timeout, doc="Seconds the job may run.")
    result_ttl = property(lambda self: self.options.result_ttl, doc="Seconds its result is kept.")
    depends_on = property(lambda self: self.options.depends_on, doc="Ids of jobs it waits for.")
    allow_failure = property(
        lambda self: self.options.allow_failure, doc="Runs even if a dependency failed."
    )

    async def result(self, timeout: float | None = None) -> Any:
        """The job's return value; same as ``fetch_job_result(job.job_id, timeout)``."""
        if self._queue is None:
            raise ConfigurationError("this Job is not attached to a queue; use fetch_job_result")
        return await self._queue.fetch_job_result(self.job_id, timeout=timeout)

    async def status(self) -> JobStatus:
        """The job's current status."""
        if self._queue is None:
            raise ConfigurationError("this Job is not attached to a queue; use get_job_status")
        return await self._queue.get_job_status(self.job_id)

    @staticmethod
    def fetch_result_sync(
        job_id: str, nats_url: str | None = None, timeout: float | None = None
    ) -> Any:
        """The return value of job ``job_id``, blocking (the original naq's call shape).

        Same as ``naq.fetch_job_result_sync(job_id, timeout, nats_url=nats_url)``: without
        ``timeout`` it does not wait, so a job not finished yet raises
        :class:`~naq.JobNotFoundError`, as the original did; a failed job raises
        :class:`~naq.JobExecutionError`.
        """
        if _blocking_result_reader is None:  # naq.sync is imported with the naq package
            raise RuntimeError("import naq before calling Job.fetch_result_sync")
        return _blocking_result_reader(job_id, timeout, nats_url=nats_url)

    @property
    def id(self) -> str:
        """The job id (the original naq's and RQ's name for :attr:`job_id`)."""
        return self.job_id

    def __repr__(self) -> str:
        return f"Job(job_id={self.job_id!r}, function={self.function!r}, queue={self.queue_name!r})"


def iter_calls(calls: Iterable[Any]) -> Iterable[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    """Normalize ``enqueue_many`` input: ``(func, args, kwargs)`` triples (args/kwargs optional)."""
    for index, call in enumerate(calls):
        if not isinstance(call, tuple | list) or not 1 <= len(call) <= 3:
            raise ConfigurationError(
                f"enqueue_many calls[{index}] must be (func, args, kwargs), got {call!r}"
            )
        func = call[0]
        args = call[1] if len(call) > 1 else ()
        kwargs = call[2] if len(call) > 2 else {}
        if not isinstance(args, tuple | list):
            raise ConfigurationError(f"enqueue_many calls[{index}] args must be a tuple or list")
        if not isinstance(kwargs, dict):
            raise ConfigurationError(f"enqueue_many calls[{index}] kwargs must be a dict")
        yield func, tuple(args), dict(kwargs)
