"""A small pool of daemon threads for sync jobs.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so a sync
job that ignores its timeout would keep a stopped worker process alive forever. These
threads are daemons: once the worker has handed the job back, the process can exit."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Called in the pool thread with ``(result, None)`` or ``(None, exception)``.
DoneCallback = Callable[[Any, BaseException | None], None]


class DaemonThreadPool:
    """Runs callables on at most ``max_workers`` daemon threads, started on demand.

    Handing work to a sleeping thread costs two context switches and a GIL hand-over, far
    more than a short job. So the pool keeps exactly one *spare* thread awake whenever work
    is waiting: a thread that finishes a job takes the next one itself, and a thread that
    starts a job while more work waits wakes (or starts) one other thread first. Blocking
    jobs still run ``max_workers`` at a time; quick jobs run back to back on few threads.
    """

    def __init__(self, max_workers: int, name: str = "naq-thread") -> None:
        self._max = max_workers
        self._name = name
        self._work: deque[tuple[Callable[[], Any], DoneCallback]] = deque()
        self._parked: list[threading.Lock] = []  # one held lock per sleeping thread
        self._threads = 0
        self._spare = 0  # threads awake and not inside a job
        self._mutex = threading.Lock()
        self._closed = False

    def run(self, fn: Callable[[], Any], on_done: DoneCallback) -> None:
        """Run ``fn()`` on a pool thread, then ``on_done(result, error)`` on that thread."""
        if self._closed:
            raise RuntimeError("thread pool is shut down")
        self._work.append((fn, on_done))
        self._ensure_spare()

    def _ensure_spare(self) -> None:
        """Make sure some thread not busy with a job will look at the waiting work."""
        with self._mutex:
            if self._spare > 0 or not self._work or self._closed:
                return
            if self._parked:
                self._spare += 1
                self._parked.pop().release()
            elif self._threads < self._max:
                self._threads += 1
                self._spare += 1
                thread = threading.Thread(
                    target=self._loop, name=f"{self._name}-{self._threads - 1}", daemon=True
                )
                thread.start()

    def _loop(self) -> None:
        park = threading.Lock()
        park.acquire()
        work = self._work
        while True:
            try:
                fn, on_done = work.popleft()
            except IndexError:
                with self._mutex:
                    if self._closed:
                        self._spare -= 1
                        return
                    if work:  # a submit slipped in: take it
                        continue
                    self._spare -= 1
                    self._parked.append(park)
                park.acquire()  # until _ensure_spare or shutdown releases it
                if self._closed:
                    return
                continue
            with self._mutex:
                self._spare -= 1
            if work:
                self._ensure_spare()
            try:
                result, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed to on_done
                result, error = None, exc
            with self._mutex:
                self._spare += 1
            try:
                on_done(result, error)
            except BaseException:  # noqa: BLE001 - a callback must not kill the thread
                pass

    def shutdown(self) -> None:
        """Let idle threads end; running ones finish their call (nobody waits for them)."""
        with self._mutex:
            self._closed = True
            parked, self._parked = self._parked, []
        for lock in parked:
            lock.release()
