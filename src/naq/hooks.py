"""Hooks (middleware): functions naq calls at fixed points of a job's and a worker's life.

A hook is registered by name on a :class:`Hooks` registry: the global one (``naq.add_hook``),
a :class:`~naq.Queue`'s (``queue.hooks``) or a :class:`~naq.Worker`'s (``worker.hooks``).
Each takes one argument:

* ``before_enqueue(job)`` and ``after_enqueue(job)``: a :class:`~naq.Job` (producer side).
  ``before_enqueue`` runs once the call is validated, just before it is stored; it may add
  ``job.headers`` (e.g. a trace context), which travel with the job.
* ``on_worker_start(worker)``, ``on_worker_stop(worker)``: the :class:`~naq.Worker`.
* ``before_job(run)``, ``after_job(run)``, ``on_retry(run)``, ``on_failure(run)``,
  ``on_dead(run)``, ``on_cancel(run)``, ``on_progress(run)``: a :class:`JobRun`.

Sync and async functions both work. A hook that raises is logged (with its traceback the
first time, then counted) and changes nothing else: the enqueue, the job and the worker go
on. Hooks run on the event loop: a sync hook must be quick (it delays every other job of
that worker while it runs). ``before_enqueue`` and ``before_job`` coroutines are awaited
before the job is stored / started; the others are started as tasks and not waited for.

Events, metrics and tracing are themselves built on these hooks (:mod:`naq.events`,
:mod:`naq.metrics`)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from loguru import logger

from .errors import ConfigurationError
from .models import JobRecord

#: Every hook name, producer side first.
HOOK_NAMES = (
    "before_enqueue",
    "after_enqueue",
    "on_worker_start",
    "on_worker_stop",
    "before_job",
    "after_job",
    "on_retry",
    "on_failure",
    "on_dead",
    "on_cancel",
    "on_progress",
)
_HOOK_NAME_SET = frozenset(HOOK_NAMES)

#: A hook function: takes one argument, returns nothing (or an awaitable of nothing).
HookFunction = Callable[[Any], Any]
F = TypeVar("F", bound=HookFunction)

#: A failing hook is logged with its traceback once, then at most once per this many seconds.
_REPORT_EVERY = 60.0


class Outcome:
    """The values of :attr:`JobRun.outcome`."""

    COMPLETED = "completed"
    FAILED = "failed"  # failed for good (no retry left, or not retried)
    RETRYING = "retrying"  # failed; it runs again later
    CANCELLED = "cancelled"
    DEAD = "dead"  # refused: never ran (not allowed, undecodable, crash loop, ...)
    HANDED_BACK = "handed_back"  # stopped by its worker's shutdown: it runs again elsewhere


@dataclass(slots=True, eq=False)
class JobRun:
    """What a worker-side hook is told about a job: one object per run, the same one for
    its ``before_job``, ``after_job`` and the hooks in between, so a hook can keep its own
    data in :attr:`state` (a tracing span, a timer) from one to the next."""

    job_id: str | None  # None only for a dead letter that could not be decoded
    queue: str
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    attempt: int
    worker_id: str
    headers: dict[str, str] = field(default_factory=dict)
    enqueued_at: float | None = None
    #: epoch seconds when its function was started (None if it never started)
    started_at: float | None = None
    #: ``after_job`` and later: one of :class:`Outcome`'s values
    outcome: str | None = None
    #: seconds its function ran (``after_job``)
    duration: float | None = None
    #: what it raised (failed, retrying) or why it was refused / cancelled (dead, cancelled)
    error: BaseException | None = None
    reason: str | None = None
    #: what it returned (completed)
    result: Any = None
    #: seconds until it runs again (``on_retry``)
    retry_in: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    #: free for hooks: kept from ``before_job`` to ``after_job``
    state: dict[str, Any] = field(default_factory=dict)


def cancelled_run(record: JobRecord, worker_id: str = "") -> JobRun:
    """The :class:`JobRun` an ``on_cancel`` hook gets for a job cancelled before it started,
    built from its (cancelled) record."""
    return JobRun(
        job_id=record.job_id,
        queue=record.queue_name,
        function=record.function,
        args=(),
        kwargs={},
        attempt=len(record.attempts) + 1,
        worker_id=worker_id,
        enqueued_at=record.enqueued_at,
        outcome=Outcome.CANCELLED,
        reason=record.error,
    )


class _Generation:
    """Bumped by every change of any registry, so :class:`HookRunner` caches stay right."""

    value = 0


class Hooks:
    """A registry of hook functions by name.

    ``hooks.add("after_job", fn)``, or as a decorator ``@hooks.add("after_job")``;
    ``hooks.add_middleware(obj)`` registers every method of ``obj`` named like a hook.
    ``Hooks(a, b)`` starts with the hooks of middleware objects or other registries."""

    __slots__ = ("_functions",)

    def __init__(self, *middleware: object) -> None:
        self._functions: dict[str, list[HookFunction]] = {}
        for item in middleware:
            if isinstance(item, Hooks):
                self.merge(item)
            else:
                self.add_middleware(item)

    @overload
    def add(self, name: str) -> Callable[[F], F]: ...

    @overload
    def add(self, name: str, func: F) -> F: ...

    def add(self, name: str, func: F | None = None) -> F | Callable[[F], F]:
        """Register ``func`` for hook ``name`` (or return a decorator that does)."""
        _check_name(name)
        if func is None:

            def decorator(f: F) -> F:
                return self.add(name, f)

            return decorator
        if not callable(func):
            raise ConfigurationError(f"hook {name} must be callable, got {func!r}")
        self._functions.setdefault(name, []).append(func)
        _Generation.value += 1
        return func

    def remove(self, name: str, func: HookFunction) -> bool:
        """Unregister ``func`` from hook ``name``; False if it was not registered."""
        _check_name(name)
        functions = self._functions.get(name, [])
        if func not in functions:
            return False
        functions.remove(func)
        _Generation.value += 1
        return True

    def add_middleware(self, middleware: object) -> None:
        """Register each method of ``middleware`` named like a hook (``before_job``, ...);
        with a :class:`Middleware` subclass, only the methods it overrides."""
        found = False
        for name in HOOK_NAMES:
            method = getattr(middleware, name, None)
            if method is None or not callable(method):
                continue
            if isinstance(middleware, Middleware) and getattr(type(middleware), name) is getattr(
                Middleware, name
            ):
                continue  # not overridden: nothing to call
            self.add(name, method)
            found = True
        if not found:
            raise ConfigurationError(
                f"{middleware!r} has no hook methods (any of: {', '.join(HOOK_NAMES)})"
            )

    def merge(self, other: Hooks) -> None:
        """Register every function of ``other`` here too."""
        for name in HOOK_NAMES:
            for func in other.functions(name):
                self.add(name, func)

    def clear(self) -> None:
        """Unregister every hook."""
        self._functions.clear()
        _Generation.value += 1

    def has(self, name: str) -> bool:
        """Whether a function is registered for ``name`` here."""
        return bool(self._functions.get(name))

    def functions(self, name: str) -> tuple[HookFunction, ...]:
        """The functions registered for ``name``, in registration order."""
        return tuple(self._functions.get(name, ()))

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self._functions.items() if v)
        return f"Hooks({counts})"


class Middleware:
    """A base class for a set of hooks: override the methods you need and pass an instance
    to ``Worker(hooks=[...])``, ``Queue(hooks=[...])`` or ``naq.add_middleware``. Methods
    left as they are here are not called at all."""

    def before_enqueue(self, job: Any) -> Any:
        """A job is about to be stored (it may set ``job.headers``)."""

    def after_enqueue(self, job: Any) -> Any:
        """A job was stored."""

    def on_worker_start(self, worker: Any) -> Any:
        """A worker is connected and about to take jobs."""

    def on_worker_stop(self, worker: Any) -> Any:
        """A worker stopped taking jobs and is about to disconnect."""

    def before_job(self, run: JobRun) -> Any:
        """A job's function is about to start."""

    def after_job(self, run: JobRun) -> Any:
        """A job's function ended and its outcome is stored (``run.outcome``,
        ``run.duration``)."""

    def on_retry(self, run: JobRun) -> Any:
        """A job failed and runs again in ``run.retry_in`` seconds."""

    def on_failure(self, run: JobRun) -> Any:
        """A job failed for good (it is kept in the dead-letter stream)."""

    def on_dead(self, run: JobRun) -> Any:
        """A message was refused without running (``run.reason``): dead-lettered."""

    def on_cancel(self, run: JobRun) -> Any:
        """A job was cancelled (or expired) before it started."""

    def on_progress(self, run: JobRun) -> Any:
        """A running job reported progress (``run.progress``, ``run.progress_message``)."""


#: The global registry: its hooks apply to every queue and worker of this process.
global_hooks = Hooks()


@overload
def add_hook(name: str) -> Callable[[F], F]: ...


@overload
def add_hook(name: str, func: F) -> F: ...


def add_hook(name: str, func: F | None = None) -> F | Callable[[F], F]:
    """Register ``func`` for hook ``name`` globally (every queue and worker of this process);
    usable as a decorator: ``@naq.add_hook("after_job")``."""
    if func is None:
        return global_hooks.add(name)
    return global_hooks.add(name, func)


def remove_hook(name: str, func: HookFunction) -> bool:
    """Unregister a global hook; False if it was not registered."""
    return global_hooks.remove(name, func)


def add_middleware(middleware: object) -> None:
    """Register every hook method of ``middleware`` globally."""
    global_hooks.add_middleware(middleware)


def load_middleware(spec: str) -> object:
    """The middleware named ``module:name`` (``naq worker --middleware``): a class is
    instantiated without arguments; an instance or a :class:`Hooks` is taken as it is. The
    module is imported from the working directory or the installed packages."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"middleware {spec!r} must be written module:name")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise ConfigurationError(
            f"cannot load middleware {spec!r}: {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(found, type):
        try:
            found = found()
        except Exception as exc:  # noqa: BLE001 - its constructor is the user's
            raise ConfigurationError(
                f"cannot create middleware {spec!r}: {type(exc).__name__}: {exc}"
            ) from None
    return found


def as_hooks(value: Hooks | object | None) -> Hooks:
    """A ``hooks=`` argument as a registry: a :class:`Hooks`, one middleware object, or a
    list of middleware objects and registries (``None``: an empty registry)."""
    if value is None:
        return Hooks()
    if isinstance(value, Hooks):
        return value
    if isinstance(value, list | tuple):
        return Hooks(*value)
    return Hooks(value)


def _check_name(name: object) -> None:
    if name not in _HOOK_NAME_SET:
        raise ConfigurationError(f"unknown hook {name!r}; hooks are: {', '.join(HOOK_NAMES)}")


class HookRunner:
    """Calls the hooks of several registries (global first, then the object's own), each
    isolated: a hook that raises is logged and the others still run."""

    __slots__ = (
        "_any",
        "_async",
        "_failures",
        "_functions",
        "_generation",
        "_registries",
        "_tasks",
    )

    def __init__(self, *registries: Hooks) -> None:
        self._registries = registries
        self._generation = -1
        #: per hook name, its functions; the names with a coroutine function; per tuple of
        #: names, whether any is registered (all rebuilt when a registry changed)
        self._functions: dict[str, tuple[HookFunction, ...]] = {}
        self._async: frozenset[str] = frozenset()
        self._any: dict[tuple[str, ...], bool] = {}
        self._failures: dict[int, tuple[int, float]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def _refresh(self) -> None:
        """Read the registries again (one changed since the last look)."""
        self._functions = {
            name: tuple(f for r in self._registries for f in r.functions(name))
            for name in HOOK_NAMES
        }
        self._async = frozenset(
            name for name, fs in self._functions.items() if any(_is_async(f) for f in fs)
        )
        self._any = {}
        self._generation = _Generation.value

    def functions(self, name: str) -> tuple[HookFunction, ...]:
        """Every function registered for ``name`` (cached until a registry changes)."""
        if self._generation != _Generation.value:
            self._refresh()
        return self._functions[name]

    def has(self, name: str) -> bool:
        """Whether any function is registered for ``name``."""
        if self._generation != _Generation.value:
            self._refresh()
        return bool(self._functions[name])

    def has_any(self, names: tuple[str, ...]) -> bool:
        """Whether any function is registered for any of ``names`` (cached)."""
        if self._generation != _Generation.value:
            self._refresh()
        found = self._any.get(names)
        if found is None:
            found = self._any[names] = any(self._functions[name] for name in names)
        return found

    def awaits(self, name: str) -> bool:
        """Whether a coroutine function is registered for ``name``."""
        if self._generation != _Generation.value:
            self._refresh()
        return name in self._async

    def fire(self, name: str, arg: Any) -> None:
        """Call the hooks of ``name`` with ``arg``: sync ones now, coroutines as tasks."""
        if self._generation != _Generation.value:
            self._refresh()
        for func in self._functions[name]:
            try:
                outcome = func(arg)
            except Exception as exc:  # noqa: BLE001 - a hook never breaks naq
                self._report(name, func, exc)
                continue
            if outcome is not None and inspect.isawaitable(outcome):
                self._start(name, func, outcome)

    async def fire_awaiting(self, name: str, arg: Any) -> None:
        """Call the hooks of ``name`` with ``arg`` in order, awaiting coroutines."""
        for func in self.functions(name):
            try:
                outcome = func(arg)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # noqa: BLE001 - a hook never breaks naq
                self._report(name, func, exc)

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (up to ``timeout``) for hook tasks still running, e.g. before a shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def _start(self, name: str, func: HookFunction, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def finished(done: asyncio.Future[Any]) -> None:
            self._tasks.discard(done)
            if not done.cancelled() and isinstance(done.exception(), Exception):
                self._report(name, func, done.exception())  # type: ignore[arg-type]

        task.add_done_callback(finished)

    def _report(self, name: str, func: HookFunction, exc: Exception) -> None:
        """Log a hook's failure: with its traceback the first time, then once a minute with
        the count since."""
        key = id(func)
        now = time.monotonic()
        what = getattr(func, "__qualname__", repr(func))
        if key not in self._failures:
            logger.opt(exception=exc).warning(
                "hook {} ({}) raised {}: {}; ignored (the job goes on)",
                name,
                what,
                type(exc).__name__,
                exc,
            )
            self._failures[key] = (0, now)
            return
        unreported, last = self._failures[key]
        unreported += 1
        if now - last >= _REPORT_EVERY:
            logger.warning(
                "hook {} ({}) failed {} more times since its last report; last: {}: {}",
                name,
                what,
                unreported,
                type(exc).__name__,
                exc,
            )
            self._failures[key] = (0, now)
        else:
            self._failures[key] = (unreported, last)


def _is_async(func: HookFunction) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - a callable object's own method
    )
