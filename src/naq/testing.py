"""Pytest fixtures for testing code that uses naq against a real ``nats-server``.

Installed as a pytest plugin (entry point ``naq``), so any project with naq installed gets:

- ``nats_server``: a fresh JetStream server on a free port with a temporary store, one per
  test module (an :class:`~naq.server.EmbeddedServer`; ``.url``, ``.restart()``, ``.stop()``).
- ``nats_url``: that server's URL.
- ``nats_cluster``: a 3-node JetStream cluster on loopback, one per test module (a
  :class:`~naq.cluster.NatsCluster`): ``.url`` (the three URLs comma-separated, for
  ``NAQ_NATS_URL``), ``.urls``, ``.node(n)`` (``n`` = 1..3, server names ``n1``..``n3``),
  ``.kill(n)`` (SIGKILL), ``.stop_node(n)``, ``.restart(n)``, ``.stream_leader(name)`` /
  ``.bucket_leader(bucket)`` (the number of the leading node) and ``.wait_meta_leader()``.
  Use it with ``NAQ_REPLICAS=3`` or ``Settings(replicas=3)``.

:class:`~naq.cluster.NatsCluster` can also be used directly (``with NatsCluster(3) as
cluster: ...``) for a cluster of another size or one per test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cluster import NatsCluster
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


@pytest.fixture(scope="module")
def nats_cluster() -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster on loopback (temp stores), per test module; a test that
    stops a node starts it again (``cluster.restart(n)``) for the tests after it."""
    cluster = NatsCluster(3).start()
    try:
        yield cluster
    finally:
        cluster.close()
