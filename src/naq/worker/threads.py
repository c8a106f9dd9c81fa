"""A small pool of daemon threads for sync jobs.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so a sync
job that ignores its timeout would keep a stopped worker process alive forever. These
threads are daemons: once the worker has handed the job back, the process can exit."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

#: Called in the pool thread with ``(result, None)`` or ``(None, exception)``.
DoneCallback = Callable[[Any, BaseException | None], None]
_Work = tuple[Callable[[], Any], DoneCallback] | None


class DaemonThreadPool:
    """Runs callables on at most ``max_workers`` daemon threads, started on demand."""

    def __init__(self, max_workers: int, name: str = "naq-thread") -> None:
        self._max = max_workers
        self._name = name
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._waiting = 0  # submitted, not yet picked up
        self._busy = 0
        self._lock = threading.Lock()
        self._closed = False

    def run(self, fn: Callable[[], Any], on_done: DoneCallback) -> None:
        """Run ``fn()`` on a pool thread, then ``on_done(result, error)`` on that thread."""
        if self._closed:
            raise RuntimeError("thread pool is shut down")
        with self._lock:
            self._waiting += 1
            self._work.put((fn, on_done))
            if len(self._threads) < self._max and self._busy + self._waiting > len(self._threads):
                thread = threading.Thread(
                    target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            fn, on_done = item
            with self._lock:
                self._waiting -= 1
                self._busy += 1
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed to on_done
                result, error = None, exc
            with self._lock:
                self._busy -= 1
            try:
                on_done(result, error)
            except BaseException:  # noqa: BLE001 - a callback must not kill the thread
                pass

    def shutdown(self) -> None:
        """Let idle threads end; running ones finish their call (nobody waits for them)."""
        self._closed = True
        for _ in self._threads:
            self._work.put(None)
