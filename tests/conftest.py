"""Shared fixtures for naq's integration tests (a real nats-server comes from ``naq.testing``).

``tests/`` is deliberately not a regular package (the unit tests assert module paths such as
``test_functions:plain``); the project root is put on ``sys.path`` so the job functions are
importable as ``tests.jobs:<name>`` by producers and by in-process and subprocess workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.js.errors
import pytest
from loguru import logger
from nats.js.api import RawStreamMsg

import naq

logger.enable("naq")  # naq disables its records at import; some tests read them

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)

from tests import helpers  # noqa: E402 - needs ROOT on sys.path
from tests.worker_procs import WorkerProcesses  # noqa: E402

T = TypeVar("T")

JOBS_STREAM = "NAQ_JOBS"
DLQ_STREAM = "NAQ_DLQ"
RESULTS_STREAM = "KV_naq_results"
#: Upper bound for anything a test waits on (jobs here take well under a second).
WAIT = 20.0


@pytest.fixture(autouse=True)
def _naq_records_enabled() -> None:
    """naq's records are off until enabled (a library's convention); tests read them."""
    logger.enable("naq")


@pytest.fixture(autouse=True)
async def _close_naq_helpers() -> AsyncIterator[None]:
    """Close the connections ``naq.enqueue(...)`` & co. cached on this test's event loop."""
    yield
    await naq.close()


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name unique to this test (valid: letters, digits, '_' and '-')."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:48]
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def _running_worker(
    queues: list[str] | str, nats_url: str, **kwargs: Any
) -> contextlib.AbstractAsyncContextManager[naq.Worker]:
    return helpers.running_worker(queues, nats_url, stop_timeout=WAIT, **kwargs)


RunningWorker = Callable[..., contextlib.AbstractAsyncContextManager[naq.Worker]]


@pytest.fixture
def running_worker() -> RunningWorker:
    """``async with running_worker([queue], nats_url, concurrency=4) as worker: ...``

    Runs an in-process worker on the test's loop and always stops it (re-raising any error
    the worker itself raised)."""
    return _running_worker


async def run_burst(queues: list[str] | str, nats_url: str, **kwargs: Any) -> naq.Worker:
    """Run a ``burst=True`` worker until the queues are empty; returns it."""
    worker = naq.Worker(queues, nats_url=nats_url, burst=True, **kwargs)
    await asyncio.wait_for(worker.run(), WAIT)
    return worker


@pytest.fixture
def burst() -> Callable[..., Awaitable[naq.Worker]]:
    """``await burst([queue], nats_url)``: run a burst worker until the queue is drained."""
    return run_burst


@contextlib.contextmanager
def _worker_in_thread(
    queues: list[str] | str, nats_url: str, **kwargs: Any
) -> Iterator[naq.Worker]:
    worker = naq.Worker(queues, nats_url=nats_url, **kwargs)
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    thread = threading.Thread(target=main, name="naq-test-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while worker._loop is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(WAIT)
        assert not thread.is_alive(), "worker thread did not stop"
        if errors:
            raise errors[0]


@pytest.fixture
def worker_thread() -> Callable[..., contextlib.AbstractContextManager[naq.Worker]]:
    """``with worker_thread([queue], nats_url) as worker:``: a worker on its own thread and
    loop (``asyncio.run``), for plain ``def`` tests using the sync API."""
    return _worker_in_thread


async def wait_for(
    check: Callable[[], Awaitable[T | None]], timeout: float = WAIT, interval: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s."""
    return await helpers.eventually(check, timeout, interval)


@contextlib.asynccontextmanager
async def raw_nats(nats_url: str) -> AsyncIterator[nats.NATS]:
    """A plain nats-py connection (to look at the server's state without naq)."""
    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:
        yield nc
    finally:
        await nc.close()


async def stream_messages(nats_url: str, stream: str, subject: str) -> list[RawStreamMsg]:
    """Every message stored in ``stream`` on ``subject``, oldest first."""
    found: list[RawStreamMsg] = []
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        seq = 1
        while True:
            try:
                msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return found
            found.append(msg)
            assert msg.seq is not None
            seq = msg.seq + 1


async def dlq_messages(nats_url: str, queue: str) -> list[RawStreamMsg]:
    """Every dead letter stored for ``queue`` (subject ``naq.dlq.<queue>``), oldest first."""
    return await stream_messages(nats_url, DLQ_STREAM, f"naq.dlq.{queue}")


async def stream_count(nats_url: str, stream: str, subject: str | None = None) -> int:
    """Messages stored in ``stream`` (on ``subject`` if given); 0 if the stream is missing."""
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream, subjects_filter=subject)
        except nats.js.errors.NotFoundError:
            return 0
        if subject is None:
            return int(info.state.messages)
        return int((info.state.subjects or {}).get(subject, 0))


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[WorkerProcesses]:
    """``workers.start([queue], url, "-c", "4")``: worker subprocesses killed at teardown."""
    found = WorkerProcesses(tmp_path)
    try:
        yield found
    finally:
        found.close()
