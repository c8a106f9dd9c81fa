"""Shared checks for the login tests (``test_auth_methods``, ``test_tls``): one way to log
in (URL plus ``NAQ_*`` variables), tried through each surface a user has (the async API,
``enqueue_sync``, a worker's start, the CLI), and a scan for secrets in everything naq shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from loguru import logger
from tests.cli_run import CliResult, naq_cli
from tests.jobs import add
from tests.nats_auth import ConfiguredServer

import naq

#: Every variable a login may set; each attempt clears the others.
LOGIN_VARIABLES = (
    "NAQ_NATS_CREDS",
    "NAQ_NATS_NKEY",
    "NAQ_NATS_TLS_CA",
    "NAQ_NATS_TLS_CERT",
    "NAQ_NATS_TLS_KEY",
)
#: A refused login must be told well within this (no reconnect loop, no long timeout).
QUICKLY = 3.0


@dataclass(frozen=True)
class Login:
    """One way to log in: the URL, the ``NAQ_*`` variables, and the strings that must never
    be shown (passwords, tokens, seeds, JWTs, private key lines)."""

    url: str
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()

    def apply(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set this login's variables in ``os.environ`` (and clear the other ones)."""
        for name in LOGIN_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)

    def cli_env(self) -> dict[str, str]:
        """The environment for ``naq_cli``: this login, and debug logging on."""
        return {"NAQ_NATS_URL": self.url, "NAQ_LOG_LEVEL": "DEBUG", **self.env}


def secret_lines(path: str) -> tuple[str, ...]:
    """The lines of a key file that are secret (a PEM body or a seed), to look for."""
    with open(path) as file:
        lines = [line.strip() for line in file]
    return tuple(line for line in lines if len(line) >= 20 and not line.startswith("-----"))


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every loguru record (all levels, extras included) written while the block runs."""
    lines: list[str] = []
    sink = logger.add(
        lambda message: lines.append(str(message)),
        level="TRACE",
        format="{level} {name} {message} {extra} {exception}",
        catch=False,
    )
    try:
        yield lines
    finally:
        logger.remove(sink)


def shown_texts(error: BaseException) -> list[str]:
    """``str`` and ``repr`` of an error and of every error chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current)]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return texts


def assert_no_secret(login: Login, *texts: str) -> None:
    """None of ``login``'s secrets appears in ``texts``."""
    assert login.secrets, "a login without secrets proves nothing"
    for text in texts:
        for secret in login.secrets:
            assert secret not in text, f"secret {secret[:6]}... shown in: {text[:300]}"


@dataclass
class Refusal:
    """What one refused attempt gave: the error (or CLI result), and its time and cost."""

    message: str
    texts: list[str]
    seconds: float
    connections: int


async def refused_by_api(server: ConfiguredServer, login: Login, queue: str) -> Refusal:
    """``await naq.Queue(...).enqueue(...)`` with ``login``: the error it raised."""
    before = server.total_connections()
    started = time.monotonic()
    producer = naq.Queue(queue, nats_url=login.url)
    try:
        with pytest.raises(naq.NaqConnectionError) as caught:
            await producer.enqueue(add, 1, 2)
        return _refusal(server, caught.value, started, before, repr(producer))
    finally:
        await producer.close()


async def refused_by_enqueue_sync(server: ConfiguredServer, login: Login, queue: str) -> Refusal:
    """``naq.enqueue_sync(...)`` (in a thread) with ``login``: the error it raised."""
    before = server.total_connections()
    started = time.monotonic()
    with pytest.raises(naq.NaqConnectionError) as caught:
        await asyncio.to_thread(naq.enqueue_sync, add, 1, 2, queue_name=queue, nats_url=login.url)
    return _refusal(server, caught.value, started, before)


async def refused_by_worker(server: ConfiguredServer, login: Login, queue: str) -> Refusal:
    """A worker's ``run()`` with ``login``: the error it stopped with."""
    before = server.total_connections()
    started = time.monotonic()
    worker = naq.Worker([queue], nats_url=login.url)
    with pytest.raises(naq.NaqConnectionError) as caught:
        await asyncio.wait_for(worker.run(), 15)
    return _refusal(server, caught.value, started, before, repr(worker))


def refused_by_cli(server: ConfiguredServer, login: Login) -> tuple[Refusal, CliResult]:
    """``naq queues`` with ``login``: exit 1 and one error line."""
    before = server.total_connections()
    started = time.monotonic()
    result = naq_cli("queues", env=login.cli_env())
    seconds = time.monotonic() - started
    assert result.code == 1, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    refusal = Refusal(
        result.error_lines[0],
        [result.stdout, result.stderr],
        seconds,
        server.total_connections() - before,
    )
    return refusal, result


def _refusal(
    server: ConfiguredServer, error: BaseException, started: float, before: int, *more: str
) -> Refusal:
    seconds = time.monotonic() - started
    return Refusal(
        str(error), [*shown_texts(error), *more], seconds, server.total_connections() - before
    )


def assert_one_quick_attempt(refusal: Refusal, within: float = QUICKLY) -> None:
    """The refusal came at once (within ``within`` s), after one connection to the server."""
    assert refusal.seconds < within, refusal
    assert refusal.connections == 1, refusal
