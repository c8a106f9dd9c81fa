"""Only naq errors leave naq: nats-py's exceptions are translated at the NATS boundary.

:class:`~naq.NaqConnectionError` is the one connection error (a timeout is its
``NaqTimeoutError``, also an ``asyncio.TimeoutError``); a job too large for the server is a
:class:`~naq.SerializationError` raised before anything of the call is stored.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from tests.fake_nats import FakeNats

import naq
from conftest import JOBS_STREAM, RESULTS_STREAM, stream_count
from naq.server import find_nats_server, free_port

PublicCall = Callable[[str], Awaitable[Any]]

#: The public helpers every application uses, each given a server URL.
PUBLIC_CALLS: dict[str, PublicCall] = {
    "get_job_info": lambda url: naq.get_job_info("no-such-job", nats_url=url),
    "enqueue": lambda url: naq.enqueue(print, 1, nats_url=url),
    "list_queues": lambda url: naq.list_queues(nats_url=url),
    "fetch_job_result": lambda url: naq.fetch_job_result("no-such-job", timeout=1, nats_url=url),
    "list_dead_letters": lambda url: naq.list_dead_letters(nats_url=url),
    "purge_queue": lambda url: naq.purge_queue("default", nats_url=url),
}


def assert_naq_error(exc: BaseException) -> None:
    """``exc`` is one of naq's errors, not a nats-py (or other) exception."""
    assert isinstance(exc, naq.NaqException), repr(exc)
    assert type(exc).__module__.startswith("naq"), type(exc)


# -- a server without JetStream -------------------------------------------------------------------
@pytest.fixture(scope="module")
def plain_nats_url() -> Iterator[str]:
    """A nats-server started without ``-js`` (``EmbeddedServer`` always enables JetStream)."""
    port = free_port()
    proc = subprocess.Popen(
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("name", sorted(PUBLIC_CALLS))
async def test_no_jetstream_is_a_naq_error(plain_nats_url: str, name: str) -> None:
    with pytest.raises(Exception) as caught:
        await asyncio.wait_for(PUBLIC_CALLS[name](plain_nats_url), 30)
    assert_naq_error(caught.value)
    assert "JetStream" in str(caught.value), str(caught.value)
    if isinstance(caught.value, TimeoutError):
        assert isinstance(caught.value, asyncio.TimeoutError)


def test_no_jetstream_in_enqueue_sync(plain_nats_url: str) -> None:
    with pytest.raises(Exception) as caught:
        naq.enqueue_sync(print, 1, nats_url=plain_nats_url)
    assert_naq_error(caught.value)
    assert "JetStream" in str(caught.value), str(caught.value)
    naq.run_sync(naq.close())


# -- a server that never answers ------------------------------------------------------------------
@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
async def test_a_server_that_never_answers_times_out_with_naq_timeouts() -> None:
    """Connected (it answers pings), but no request is ever answered: the call ends in a
    ``NaqTimeoutError``, which is also an ``asyncio.TimeoutError`` (each JetStream request
    waits 10 s, so one async and one sync call, side by side)."""
    info = {"server_id": "mute", "version": "2.15.1", "max_payload": 1048576, "headers": True}
    async with FakeNats(info, answer_pings=True) as mute:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                naq.get_job_info("no-such-job", nats_url=mute.url),
                asyncio.to_thread(naq.enqueue_sync, print, 1, nats_url=mute.url),
                return_exceptions=True,
            ),
            45,
        )
        await naq.close()
        await asyncio.to_thread(naq.run_sync, naq.close())
    for outcome in outcomes:
        assert isinstance(outcome, BaseException), outcome
        assert_naq_error(outcome)
        assert isinstance(outcome, naq.NaqConnectionError), repr(outcome)
        assert isinstance(outcome, asyncio.TimeoutError), repr(outcome)


async def test_a_connect_that_times_out_is_a_naq_timeout() -> None:
    """A server that accepts the connection but never says hello."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        url = f"nats://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(naq.NaqConnectionError) as caught:
            await naq.Queue(nats_url=url).connection()
        assert isinstance(caught.value, asyncio.TimeoutError), repr(caught.value)
    finally:
        listener.close()


# -- the translation itself -----------------------------------------------------------------------
def _nats_exception_classes() -> list[type[BaseException]]:
    found = []
    for module in (nats.errors, nats.js.errors):
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance as nats-py might raise it; attributes its ``__str__`` reads may be unset."""
    try:
        return cls()
    except TypeError:
        exc = cls.__new__(cls)
        Exception.__init__(exc)
        return exc


@pytest.mark.parametrize("cls", _nats_exception_classes(), ids=lambda cls: cls.__qualname__)
def test_every_nats_exception_becomes_a_naq_error(cls: type[BaseException]) -> None:
    from naq.transport.errors import translate

    original = _instance(cls)
    translated = translate(original, "test request")
    assert_naq_error(translated)
    str(translated)  # printable
    if isinstance(original, asyncio.TimeoutError):
        assert isinstance(translated, asyncio.TimeoutError)
        assert isinstance(translated, naq.NaqConnectionError)


def test_a_timeout_names_what_the_server_said_before() -> None:
    from naq.transport.errors import AnnotatedTimeoutError, translate

    translated = translate(AnnotatedTimeoutError(" (the server said: nope)"), "thing")
    assert isinstance(translated, asyncio.TimeoutError)
    assert str(translated) == "NATS did not answer the thing in time (the server said: nope)"


def test_no_responders_to_the_jetstream_api_says_jetstream_is_off() -> None:
    from naq.transport.errors import translate

    translated = translate(nats.js.errors.ServiceUnavailableError(), "create stream X")
    assert "is JetStream enabled" in str(translated)
    busy = nats.js.errors.ServiceUnavailableError(code=503, description="JetStream is busy")
    assert "JetStream is busy" in str(translate(busy, "create stream X"))


async def test_a_permissions_violation_fails_only_the_operations_on_its_subject() -> None:
    from naq.transport.refusals import InFlight

    loop = asyncio.get_running_loop()
    in_flight = InFlight()
    refused, other, done = loop.create_future(), loop.create_future(), loop.create_future()
    done.set_result(1)
    in_flight.track("$KV.naq_results.ABC", refused)
    in_flight.track("naq.queue.default", other)
    in_flight.track("$KV.naq_results.ABC", done)
    assert in_flight.refuse("nats: stale connection") == 0
    text = 'nats: permissions violation for publish to "$kv.naq_results.abc"'
    assert in_flight.refuse(text) == 1
    with pytest.raises(naq.NaqConnectionError, match=r"publish to \$KV\.naq_results\.ABC"):
        refused.result()
    assert not other.done()
    assert in_flight.refuse(text) == 0  # forgotten once failed
    other.cancel()


# -- a job larger than the server's max_payload ----------------------------------------------------
BIG = "x" * (2 * 1024 * 1024)  # the default max_payload is 1 MB


async def stored(nats_url: str) -> tuple[int, int]:
    """Messages in the jobs stream and in the results bucket (job records)."""
    return await stream_count(nats_url, JOBS_STREAM), await stream_count(nats_url, RESULTS_STREAM)


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


OVERSIZED: dict[str, Callable[[str, str], Awaitable[Any]]] = {
    "enqueue": lambda url, q: naq.enqueue(print, BIG, queue_name=q, nats_url=url),
    "enqueue_sync": lambda url, q: asyncio.to_thread(
        naq.enqueue_sync, print, BIG, queue_name=q, nats_url=url
    ),
    "enqueue_many": lambda url, q: naq.enqueue_many(
        [(print, (1,), {}), (print, (BIG,), {}), (print, (2,), {})], queue_name=q, nats_url=url
    ),
    "enqueue_many_sync": lambda url, q: asyncio.to_thread(
        naq.enqueue_many_sync,
        [(print, (1,), {}), (print, (BIG,), {})],
        queue_name=q,
        nats_url=url,
    ),
    "enqueue_at": lambda url, q: naq.enqueue_at(_later(), print, BIG, queue_name=q, nats_url=url),
    "enqueue_in": lambda url, q: naq.enqueue_in(3600, print, BIG, queue_name=q, nats_url=url),
}


@pytest.mark.parametrize("name", sorted(OVERSIZED))
async def test_an_oversized_job_is_refused_before_anything_is_stored(
    nats_url: str, queue: str, name: str
) -> None:
    await naq.enqueue(print, 0, queue_name=queue, nats_url=nats_url)  # storage exists
    before = await stored(nats_url)
    with pytest.raises(naq.SerializationError, match="max_payload"):
        await asyncio.wait_for(OVERSIZED[name](nats_url, queue), 30)
    after = await stored(nats_url)
    assert after == before, f"(jobs, records) before {before}, after {after}"
    # and the connection is still fine for the next job
    await naq.enqueue(print, 1, queue_name=queue, nats_url=nats_url)
    naq.run_sync(naq.close())
