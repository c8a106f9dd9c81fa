"""Runs job functions: coroutines on the event loop, plain functions in a bounded thread pool.

A slot is held for as long as the job's code actually runs: a sync job that outlives its
timeout keeps its thread (Python cannot stop a thread) and its slot until it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

from ..context import JobContext, reset_current, set_current
from ..errors import JobTimeoutError
from .log_extra import bind_job_to_logs, unbind_job_from_logs
from .threads import DaemonThreadPool


class Executor:
    """Bounded execution of job functions, ``concurrency`` at a time."""

    def __init__(self, concurrency: int, on_release: Callable[[], None] | None = None) -> None:
        self.concurrency = concurrency
        self._pool = DaemonThreadPool(concurrency, name="naq-job")
        self.busy = 0  # slots held by running code (including timed-out sync threads)
        self.orphaned = 0  # sync threads still running after their job timed out
        self._is_async: dict[Callable[..., Any], bool] = {}
        self._on_release = on_release
        # sync jobs' completions, handed from pool threads to the loop in batches:
        # one loop wake-up for however many finished meanwhile
        self._done: deque[tuple[Callable[..., None], Any, BaseException | None]] = deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _completed(
        self, settle: Callable[..., None], result: Any, error: BaseException | None
    ) -> None:
        """Called in a pool thread when a sync job returns."""
        self._done.append((settle, result, error))
        if not self._drain_scheduled and self._loop is not None:
            self._drain_scheduled = True
            _call_soon(self._loop, self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        done = self._done
        while done:
            settle, result, error = done.popleft()
            settle(result, error)

    @property
    def free_slots(self) -> int:
        """Slots not held by running code."""
        return self.concurrency - self.busy

    def acquire(self) -> None:
        """Take a slot (the caller checked :attr:`free_slots`)."""
        self.busy += 1

    def release(self) -> None:
        """Give a slot back."""
        self.busy -= 1
        if self._on_release is not None:
            self._on_release()

    def is_async(self, func: Callable[..., Any]) -> bool:
        """True when ``func`` is a coroutine function (runs on the loop, not in a thread)."""
        is_async = self._is_async.get(func)
        if is_async is None:
            is_async = self._is_async[func] = inspect.iscoroutinefunction(
                func
            ) or inspect.iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004
        return is_async

    async def run(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: JobContext,
        timeout: float | None,
    ) -> Any:
        """Run the function in a held slot and return its result (or raise its error, or
        :class:`JobTimeoutError`); the slot is released when its code is done."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any, error: BaseException | None) -> None:
            if future.done():  # the waiting task was cancelled
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        if not self.is_async(func):
            self.submit(func, args, kwargs, ctx, timeout, done)
            return await future
        task = self.submit_async(func, args, kwargs, ctx, timeout, done)
        try:
            return await future
        except asyncio.CancelledError:
            task.cancel()  # the caller is cancelled (shutdown): so is the job
            raise

    def submit_async(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: JobContext,
        timeout: float | None,
        on_done: Callable[[Any, BaseException | None], None],
    ) -> asyncio.Task[Any]:
        """Run a coroutine function as a task of its own, in a held slot; ``on_done(result,
        error)`` is called on the loop when it ends: its error, :class:`JobTimeoutError`
        after ``timeout`` (the task is cancelled), or ``CancelledError`` if it was cancelled
        from outside. The slot is released when the task is done."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(set_current, ctx)  # naq.current_job() inside the job's task
        context.run(bind_job_to_logs, ctx)  # job_id, queue, attempt in its log records
        timed_out = False
        timer: asyncio.TimerHandle | None = None
        task = loop.create_task(_job_outcome(func, args, kwargs), context=context)

        def finished(task: asyncio.Task[tuple[Any, BaseException | None]]) -> None:
            if timer is not None:
                timer.cancel()
            self.release()
            if not task.cancelled():
                on_done(*task.result())
            elif timed_out:
                on_done(None, JobTimeoutError(f"job ran longer than its timeout of {timeout:g} s"))
            else:
                on_done(None, asyncio.CancelledError())

        def time_out() -> None:
            nonlocal timed_out
            if not task.done():
                timed_out = True
                ctx.request_cancel()
                task.cancel()

        task.add_done_callback(finished)
        if timeout is not None:
            timer = loop.call_later(timeout, time_out)
        return task

    def submit(
        self,
        func: Callable[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        ctx: JobContext,
        timeout: float | None,
        on_done: Callable[[Any, BaseException | None], None],
    ) -> None:
        """Run a sync function in a pool thread, in a held slot; ``on_done(result, error)``
        is called once on the loop: when it returns, or with :class:`JobTimeoutError` when
        ``timeout`` passes first. The slot is released when the thread returns."""
        loop = asyncio.get_running_loop()

        def call() -> Any:  # in a pool thread: naq.current_job() is this job's context
            token = set_current(ctx)
            log_token = bind_job_to_logs(ctx)  # job_id, queue, attempt in its log records
            try:
                return func(*args, **kwargs)
            finally:
                unbind_job_from_logs(log_token)
                reset_current(token)

        answered = orphan = False
        timer: asyncio.TimerHandle | None = None

        def settle(result: Any, error: BaseException | None) -> None:  # on the loop
            nonlocal answered
            # the slot is freed when the thread is done, not when we stop waiting for it
            if orphan:
                self.orphaned -= 1
            self.release()
            if not answered:
                answered = True
                if timer is not None:
                    timer.cancel()
                on_done(result, error)

        def timed_out() -> None:
            nonlocal answered, orphan
            if answered:
                return
            answered = orphan = True
            self.orphaned += 1
            ctx.request_cancel()  # a cooperative job can see it and stop
            on_done(
                None,
                JobTimeoutError(
                    f"job ran longer than its timeout of {timeout:g} s (its thread keeps "
                    "running until the function returns; its slot stays taken until then)"
                ),
            )

        self._loop = loop
        self._pool.run(call, lambda result, error: self._completed(settle, result, error))
        if timeout is not None:
            timer = loop.call_later(timeout, timed_out)

    def shutdown(self) -> None:
        """Stop accepting work; threads still running are not waited for (they are daemons)."""
        self._pool.shutdown()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: the worker is gone
        pass


async def _job_outcome(
    func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> tuple[Any, BaseException | None]:
    """Await the job; its exception becomes a value, so a job raising ``SystemExit`` or
    ``KeyboardInterrupt`` cannot escape its task and stop the worker's event loop."""
    try:
        return await func(*args, **kwargs), None
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the job's own failure
        return None, exc
