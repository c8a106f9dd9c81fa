"""The private event loop behind naq's blocking API: one daemon thread running one loop.

Started on first use. A forked child forgets its parent's loop (the thread did not survive
the fork) and starts its own on its next call. At interpreter exit :meth:`LoopThread.stop`
runs a cleanup coroutine, cancels what is left and closes the loop without a sound."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Cleanup to run on the loop before it stops (closing connections).
Cleanup = Callable[[], Coroutine[Any, Any, None]]


class LoopThread:
    """An event loop running forever in a daemon thread; :meth:`run` hands it coroutines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop, or ``None`` before the first call (and after :meth:`stop`)."""
        return self._loop

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and return its result (blocking the caller)."""
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("naq sync helpers cannot be called from naq's own loop thread")
        # A plain lock as the hand-back: about half the cost of run_coroutine_threadsafe's
        # chained concurrent future (this is every enqueue_sync call's overhead).
        finished = threading.Lock()
        finished.acquire()
        started: list[asyncio.Future[T]] = []

        def start() -> None:
            try:
                task: asyncio.Future[T] = loop.create_task(coro)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                coro.close()
                task = loop.create_future()
                task.set_exception(exc)
            started.append(task)
            if task.done():
                finished.release()
            else:
                task.add_done_callback(lambda _task: finished.release())

        loop.call_soon_threadsafe(start)
        try:
            finished.acquire()
        except BaseException:  # e.g. KeyboardInterrupt while waiting: stop the call too
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in started])
            raise
        return started[0].result()

    def forget_after_fork(self) -> asyncio.AbstractEventLoop | None:
        """In a forked child: drop the parent's loop, whose thread did not survive the fork,
        so the next :meth:`run` starts a fresh one; returns the old loop.

        The old loop is never closed or run again here: its selector (epoll) is shared with
        the parent, and closing it would unregister the parent's own wake-up pipe. Its tasks
        are told not to complain when they are collected.
        """
        old, self._loop, self._thread = self._loop, None, None
        self._lock = threading.Lock()  # another thread may have held it at the fork
        if old is not None:
            for task in asyncio.all_tasks(old):
                task._log_destroy_pending = False  # type: ignore[attr-defined]
        return old

    def stop(self, cleanup: Cleanup | None = None, timeout: float = 5.0) -> None:
        """Run ``cleanup`` on the loop, cancel every task left, then stop and close the loop,
        quietly (at interpreter exit). Each step is bounded by ``timeout`` seconds."""
        loop, thread = self._loop, self._thread
        if loop is None or loop.is_closed() or thread is None or not thread.is_alive():
            return
        loop.set_exception_handler(lambda _loop, _context: None)  # exiting: nothing to report
        future = asyncio.run_coroutine_threadsafe(_shut_down(cleanup, timeout), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=3 * timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            return  # stuck in a call that never returns: leave it to the interpreter
        for task in asyncio.all_tasks(loop):  # only if a step above timed out
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        loop.close()
        with self._lock:
            if self._loop is loop:
                self._loop, self._thread = None, None


async def _shut_down(cleanup: Cleanup | None, timeout: float) -> None:
    """Run ``cleanup``, then cancel and await every other task of the running loop."""
    if cleanup is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(cleanup(), timeout)
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_asyncgens(), timeout)
