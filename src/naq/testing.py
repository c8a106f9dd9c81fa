"""Pytest fixtures for testing code that uses naq against a real ``nats-server``.

Installed as a pytest plugin (entry point ``naq``), so any project with naq installed gets:

- ``nats_server``: a fresh JetStream server on a free port with a temporary store, one per
  test module (an :class:`~naq.server.EmbeddedServer`; ``.url``, ``.restart()``, ``.stop()``).
- ``nats_url``: that server's URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import EmbeddedServer


@pytest.fixture(scope="module")
def nats_server() -> Iterator[EmbeddedServer]:
    """A real ``nats-server -js`` on a free port with a temp store, per test module."""
    server = EmbeddedServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nats_url(nats_server: EmbeddedServer) -> str:
    """URL of the module's ``nats_server``; restarts it if a test left it stopped."""
    if nats_server.process is None or nats_server.process.poll() is not None:
        nats_server.start()
    return nats_server.url
