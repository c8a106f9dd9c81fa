"""The worker's thread pool for sync jobs (DaemonThreadPool) and its one-timer delayed calls
(DelayedCalls). No server needed."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger

from naq.worker.delayed import DelayedCalls
from naq.worker.threads import DaemonThreadPool

WAIT = 10.0


@pytest.fixture
def pool_name() -> str:
    return f"tp-{uuid.uuid4().hex[:8]}"


def pool_threads(name: str) -> list[threading.Thread]:
    """The live threads a pool named ``name`` started."""
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]


@pytest.fixture
def make_pool(pool_name: str) -> Iterator[Callable[[int], DaemonThreadPool]]:
    pools: list[DaemonThreadPool] = []

    def make(max_workers: int) -> DaemonThreadPool:
        pool = DaemonThreadPool(max_workers, name=pool_name)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown()


class Outcomes:
    """Collects ``on_done`` calls (thread-safe); ``wait(n)`` until n arrived."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[Any, BaseException | None]] = {}
        self.calls = 0
        self._cond = threading.Condition()

    def callback(self, key: int) -> Callable[[Any, BaseException | None], None]:
        def on_done(result: Any, error: BaseException | None) -> None:
            with self._cond:
                self.calls += 1
                assert key not in self.done, f"on_done called twice for {key}"
                self.done[key] = (result, error)
                self._cond.notify_all()

        return on_done

    def wait(self, n: int, timeout: float = WAIT) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.calls >= n, timeout)
        assert ok, f"only {self.calls} of {n} calls finished within {timeout} s"


def wait_until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.005)


# --------------------------------------------------------------------------- DaemonThreadPool


def test_quick_callables_all_run_exactly_once(make_pool: Any) -> None:
    pool = make_pool(8)
    outcomes = Outcomes()
    runs = [0] * 2000
    lock = threading.Lock()

    def job(i: int) -> Callable[[], int]:
        def fn() -> int:
            with lock:
                runs[i] += 1
            return i * 3

        return fn

    for i in range(2000):
        pool.run(job(i), outcomes.callback(i))
    outcomes.wait(2000)
    time.sleep(0.05)  # nothing arrives late or twice

    assert runs == [1] * 2000
    assert outcomes.calls == 2000
    assert outcomes.done == {i: (i * 3, None) for i in range(2000)}


def test_errors_reach_on_done_and_the_pool_keeps_working(make_pool: Any) -> None:
    pool = make_pool(4)
    outcomes = Outcomes()
    raised: dict[int, BaseException] = {}

    def job(i: int) -> Callable[[], Any]:
        def fn() -> Any:
            if i % 5 == 0:
                exc: BaseException = ValueError(f"bad {i}") if i % 10 else SystemExit(i)
                raised[i] = exc
                raise exc
            return f"ok {i}"

        return fn

    for i in range(200):
        pool.run(job(i), outcomes.callback(i))
    outcomes.wait(200)

    for i in range(200):
        result, error = outcomes.done[i]
        if i % 5 == 0:
            assert result is None
            assert error is raised[i]
        else:
            assert (result, error) == (f"ok {i}", None)


def test_a_failing_on_done_does_not_kill_the_thread(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(1)
    outcomes = Outcomes()

    def explode(result: Any, error: BaseException | None) -> None:
        raise RuntimeError("callback failed")

    pool.run(lambda: 1, explode)
    for i in range(5):
        pool.run(lambda i=i: i, outcomes.callback(i))
    outcomes.wait(5)
    assert outcomes.done == {i: (i, None) for i in range(5)}
    assert len(pool_threads(pool_name)) == 1


def test_blocking_work_runs_max_workers_at_once_and_no_more(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(20)
    outcomes = Outcomes()
    barrier = threading.Barrier(20, timeout=5)
    release = [threading.Event() for _ in range(20)]
    passed = threading.Semaphore(0)
    started_21st = threading.Event()

    def blocker(i: int) -> Callable[[], str]:
        def fn() -> str:
            barrier.wait()  # only passes if all 20 run at the same time
            passed.release()
            assert release[i].wait(WAIT), "never released"
            return threading.current_thread().name

        return fn

    try:
        for i in range(20):
            pool.run(blocker(i), outcomes.callback(i))
        for _ in range(20):
            assert passed.acquire(timeout=WAIT), "the 20 blocking jobs did not run together"
        assert outcomes.calls == 0

        pool.run(started_21st.set, outcomes.callback(20))
        assert not started_21st.wait(0.5), "a 21st job ran while 20 were running (max 20)"
        assert len(pool_threads(pool_name)) == 20

        release[7].set()
        assert started_21st.wait(WAIT), "the 21st job did not run once a thread was free"
        outcomes.wait(2)
        assert outcomes.done[7][1] is None
        assert outcomes.done[20] == (None, None)
    finally:
        for event in release:
            event.set()
    outcomes.wait(21)
    assert all(error is None for _, error in outcomes.done.values())
    names = {outcomes.done[i][0] for i in range(20)}
    assert len(names) == 20  # each blocking job had its own thread
    assert len(pool_threads(pool_name)) == 20


def test_quick_work_does_not_start_a_thread_per_job(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(200)
    outcomes = Outcomes()
    used: set[str] = set()

    def fn() -> None:
        used.add(threading.current_thread().name)

    for i in range(2000):
        pool.run(fn, outcomes.callback(i))
    outcomes.wait(2000)

    started = pool_threads(pool_name)
    assert 1 <= len(started) < 50, f"{len(started)} threads for 2000 quick jobs"
    assert used <= {t.name for t in started}


def test_idle_pool_threads_wake_up_for_new_work(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(4)
    outcomes = Outcomes()
    for round_ in range(5):
        for i in range(10):
            pool.run(lambda: None, outcomes.callback(round_ * 10 + i))
        outcomes.wait((round_ + 1) * 10)
        time.sleep(0.05)  # let the threads park
    assert 1 <= len(pool_threads(pool_name)) <= 4


def test_shutdown_ends_parked_threads_and_refuses_new_work(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(6)
    outcomes = Outcomes()
    barrier = threading.Barrier(3, timeout=5)
    for i in range(3):
        pool.run(barrier.wait, outcomes.callback(i))  # three threads at once
    outcomes.wait(3)
    assert all(error is None for _, error in outcomes.done.values())
    assert len(pool_threads(pool_name)) >= 3
    time.sleep(0.1)  # all idle (parked) now

    pool.shutdown()
    wait_until(lambda: not pool_threads(pool_name), timeout=1.0)

    with pytest.raises(RuntimeError, match="shut down"):
        pool.run(lambda: None, outcomes.callback(99))
    time.sleep(0.05)
    assert 99 not in outcomes.done


def test_shutdown_lets_a_running_job_finish(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(2)
    outcomes = Outcomes()
    running, release = threading.Event(), threading.Event()

    def slow() -> str:
        running.set()
        release.wait(WAIT)
        return "finished"

    pool.run(slow, outcomes.callback(0))
    assert running.wait(WAIT)
    pool.shutdown()
    assert pool_threads(pool_name), "the running job's thread ended early"
    release.set()
    outcomes.wait(1)
    assert outcomes.done[0] == ("finished", None)
    wait_until(lambda: not pool_threads(pool_name), timeout=1.0)


def test_pool_threads_are_daemons(make_pool: Any, pool_name: str) -> None:
    pool = make_pool(2)
    outcomes = Outcomes()
    pool.run(lambda: threading.current_thread().daemon, outcomes.callback(0))
    outcomes.wait(1)
    assert outcomes.done[0] == (True, None)
    assert all(t.daemon for t in pool_threads(pool_name))


# --------------------------------------------------------------------------- DelayedCalls


async def test_delayed_calls_fire_after_the_delay_in_order() -> None:
    loop = asyncio.get_running_loop()
    calls = DelayedCalls(0.2)
    added: dict[int, float] = {}
    fired: list[tuple[int, float]] = []

    all_fired = asyncio.Event()

    def record(i: int) -> None:
        fired.append((i, loop.time()))
        if len(fired) == 5:
            all_fired.set()

    for i in range(5):
        added[i] = loop.time()
        calls.add(functools.partial(record, i))
        await asyncio.sleep(0.03)

    await asyncio.wait_for(all_fired.wait(), WAIT)

    assert [i for i, _ in fired] == [0, 1, 2, 3, 4]
    for i, at in fired:
        waited = at - added[i]
        assert waited >= 0.2, f"call {i} fired after {waited:.3f} s (< delay)"
        assert waited < 0.2 + 2.0, f"call {i} fired after {waited:.3f} s"
    await asyncio.sleep(0.3)
    assert len(fired) == 5  # each fired once


async def test_cancelled_call_never_fires() -> None:
    calls = DelayedCalls(0.05)
    fired: list[str] = []
    first = calls.add(lambda: fired.append("a"))
    middle = calls.add(lambda: fired.append("b"))
    calls.add(lambda: fired.append("c"))
    middle.cancel()
    await asyncio.sleep(0.3)
    assert fired == ["a", "c"]
    first.cancel()  # after the call: a no-op
    assert fired == ["a", "c"]


async def test_cancelling_every_call_fires_nothing_and_later_calls_still_fire() -> None:
    calls = DelayedCalls(0.05)
    fired: list[int] = []
    handles = [calls.add(functools.partial(fired.append, i)) for i in range(5)]
    for handle in handles:
        handle.cancel()
    await asyncio.sleep(0.2)
    assert fired == []
    calls.add(lambda: fired.append(99))
    await asyncio.sleep(0.2)
    assert fired == [99]


async def test_close_cancels_everything_waiting() -> None:
    calls = DelayedCalls(0.05)
    fired: list[int] = []
    for i in range(5):
        calls.add(functools.partial(fired.append, i))
    calls.close()
    await asyncio.sleep(0.2)
    assert fired == []
    # usable again afterwards
    calls.add(lambda: fired.append(7))
    await asyncio.sleep(0.2)
    assert fired == [7]


async def test_a_failing_callback_does_not_stop_the_others() -> None:
    calls = DelayedCalls(0.05)
    fired: list[int] = []
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(m.record["message"]), level="ERROR")

    def boom() -> None:
        raise RuntimeError("callback failed")

    try:
        calls.add(lambda: fired.append(0))
        calls.add(boom)
        calls.add(lambda: fired.append(2))
        await asyncio.sleep(0.01)
        calls.add(boom)
        calls.add(lambda: fired.append(4))
        await asyncio.sleep(0.3)
    finally:
        logger.remove(sink)
    assert fired == [0, 2, 4]
    assert logged == ["delayed call failed", "delayed call failed"]


async def test_a_callback_may_add_another_delayed_call() -> None:
    loop = asyncio.get_running_loop()
    calls = DelayedCalls(0.05)
    fired: list[tuple[str, float]] = []

    def first() -> None:
        fired.append(("first", loop.time()))
        calls.add(lambda: fired.append(("second", loop.time())))

    calls.add(first)
    await asyncio.sleep(0.4)
    assert [name for name, _ in fired] == ["first", "second"]
    assert fired[1][1] - fired[0][1] >= 0.05
