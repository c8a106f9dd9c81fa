"""What the user is told when NATS refuses the login, refuses an operation for lack of
permission, or does not offer the TLS naq was told to use.

A real nats-server with users and permissions from a config file (``-c``), and a fake server
that records every byte it receives (to prove credentials are never sent in clear text).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from tests.cli_run import naq_cli
from tests.fake_nats import AUTH_INFO, FakeNats

import naq
from naq.server import EmbeddedServer

ADMIN = ("admin", "s3cret-admin")
LIMITED = ("limited", "s3cret-limited")
NO_KV = ("nokv", "s3cret-nokv")
NO_INBOX = ("noinbox", "s3cret-noinbox")
WRONG_PASSWORD = "Wr0ng-passw0rd"
#: The JetStream API timeout naq uses: a permission error must come well before it.
REQUEST_TIMEOUT = 10.0

CONFIG = """
authorization {
  users = [
    {user: "admin", password: "s3cret-admin"}
    {user: "limited", password: "s3cret-limited", permissions: {
      publish: {allow: ["naq.queue.>", "_INBOX.>"]}
      subscribe: {allow: ["_INBOX.>"]}
    }}
    {user: "nokv", password: "s3cret-nokv", permissions: {
      publish: {allow: ["$JS.API.>", "naq.queue.>", "_INBOX.>"]}
      subscribe: {allow: ["_INBOX.>"]}
    }}
    {user: "noinbox", password: "s3cret-noinbox", permissions: {
      subscribe: {allow: ["naq.>"]}
    }}
  ]
}
"""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A JetStream server whose users need a password, two of them with few permissions."""
    config = tmp_path_factory.mktemp("auth") / "auth.conf"
    config.write_text(CONFIG)
    with EmbeddedServer(extra_args=["-c", str(config)]) as server:
        yield server


def url_for(server: EmbeddedServer, user: str, password: str) -> str:
    """The server's URL logging in as ``user``."""
    return f"nats://{user}:{password}@{server.host}:{server.port}"


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def test_the_admin_user_can_log_in(auth_server: EmbeddedServer) -> None:
    result = naq_cli("queues", env={"NAQ_NATS_URL": url_for(auth_server, *ADMIN)})
    assert result.code == 0, result.stderr


# -- a wrong password -------------------------------------------------------------------------
def test_wrong_password_in_the_cli_says_login_refused_every_time(
    auth_server: EmbeddedServer,
) -> None:
    """The server's socket reset after its -ERR used to replace the authorization error
    now and then with "cannot reach NATS ... start one with 'naq server'"."""
    url = url_for(auth_server, "admin", WRONG_PASSWORD)
    for attempt in range(20):
        result = naq_cli("queues", env={"NAQ_NATS_URL": url})
        assert result.code == 1, (attempt, result.stderr)
        assert len(result.error_lines) == 1, (attempt, result.stderr)
        line = result.error_lines[0]
        assert "refused the login (authorization violation)" in line, (attempt, line)
        assert WRONG_PASSWORD not in result.stderr + result.stdout


async def test_wrong_password_in_the_api_says_login_refused_every_time(
    auth_server: EmbeddedServer,
) -> None:
    url = url_for(auth_server, "admin", WRONG_PASSWORD)
    for attempt in range(20):
        queue = naq.Queue(nats_url=url)
        with pytest.raises(naq.NaqConnectionError) as caught:
            await queue.connection()
        await queue.close()
        message = str(caught.value)
        assert "refused the login (authorization violation)" in message, (attempt, message)
        assert WRONG_PASSWORD not in message


def test_wrong_password_in_enqueue_sync(auth_server: EmbeddedServer) -> None:
    url = url_for(auth_server, "admin", WRONG_PASSWORD)
    with pytest.raises(naq.NaqConnectionError, match="refused the login"):
        naq.enqueue_sync(print, 1, nats_url=url)


def test_wrong_password_in_the_blocking_client(auth_server: EmbeddedServer) -> None:
    """The blocking client of ``enqueue_sync`` (once storage is known) says the same."""
    from naq.settings import load_settings
    from naq.transport.blocking import BlockingClient

    client = BlockingClient(load_settings(url_for(auth_server, "admin", WRONG_PASSWORD)))
    with pytest.raises(naq.NaqConnectionError, match="refused the login"):
        client.request_many([("naq.queue.default", None, b"{}")])


# -- a permissions violation ------------------------------------------------------------------
def test_permission_violation_in_the_cli_names_it(auth_server: EmbeddedServer) -> None:
    """A user who may not use the JetStream API: the one line says so, at once (it used to
    be a timeout after 10 s that said nothing of permissions)."""
    started = time.monotonic()
    result = naq_cli("queues", env={"NAQ_NATS_URL": url_for(auth_server, *LIMITED)})
    elapsed = time.monotonic() - started
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert "permissions violation" in line, line
    assert "$JS.API." in line, line
    assert "naq server" not in line
    assert elapsed < REQUEST_TIMEOUT - 2, elapsed


async def test_permission_violation_in_enqueue_names_it(
    auth_server: EmbeddedServer, queue: str
) -> None:
    started = time.monotonic()
    with pytest.raises(naq.NaqConnectionError, match="permissions violation") as caught:
        await naq.enqueue(print, 1, queue_name=queue, nats_url=url_for(auth_server, *LIMITED))
    assert "$JS.API." in str(caught.value)
    assert time.monotonic() - started < REQUEST_TIMEOUT / 2


async def test_permission_violation_on_a_write_names_it(
    auth_server: EmbeddedServer, queue: str
) -> None:
    """A user who may use the JetStream API but not write job records: the refused write
    fails at once, naming its subject (it used to wait for its acknowledgement's timeout)."""
    started = time.monotonic()
    with pytest.raises(naq.NaqConnectionError, match="permissions violation") as caught:
        await naq.enqueue(print, 1, queue_name=queue, nats_url=url_for(auth_server, *NO_KV))
    assert "$KV.naq_results." in str(caught.value)
    assert time.monotonic() - started < REQUEST_TIMEOUT / 2


def test_permission_violation_in_enqueue_sync_names_it(
    auth_server: EmbeddedServer, queue: str
) -> None:
    """The blocking client used to take the -ERR for a lost connection: it retried and
    then said "cannot reach NATS ... start one with 'naq server'"."""
    url = url_for(auth_server, *NO_KV)
    with pytest.raises(naq.NaqConnectionError, match="permissions violation") as caught:
        naq.enqueue_sync(print, 1, queue_name=queue, nats_url=url)
    assert "$KV.naq_results." in str(caught.value)
    assert "naq server" not in str(caught.value)


async def test_replies_the_user_may_not_receive_time_out_naming_why(
    auth_server: EmbeddedServer, queue: str
) -> None:
    """A user who may not subscribe to reply inboxes: nothing is ever answered, and the
    timeout says what the server reported (it used to be a bare timeout)."""
    with pytest.raises(naq.NaqConnectionError) as caught:
        await naq.enqueue(print, 1, queue_name=queue, nats_url=url_for(auth_server, *NO_INBOX))
    assert isinstance(caught.value, asyncio.TimeoutError), repr(caught.value)
    message = str(caught.value)
    assert "in time" in message, message
    assert "permissions violation for subscription" in message, message


# -- TLS asked for, not offered -----------------------------------------------------------------
TLS_PASSWORD = "hunter2-tls-only"


def tls_url(fake: FakeNats) -> str:
    """A ``tls://`` URL with a password, pointing at the fake (plain) server."""
    return f"tls://bob:{TLS_PASSWORD}@127.0.0.1:{fake.port}"


def assert_nothing_sent(fake: FakeNats, message: str) -> None:
    """The client refused with the TLS line and sent neither CONNECT nor the password."""
    assert "does not require TLS although TLS was asked for" in message, message
    assert b"CONNECT" not in fake.received, bytes(fake.received[:200])
    assert TLS_PASSWORD.encode() not in fake.received
    assert TLS_PASSWORD not in message


async def test_tls_url_to_a_plain_server_sends_no_password_async() -> None:
    async with FakeNats(AUTH_INFO) as fake:
        queue = naq.Queue(nats_url=tls_url(fake))
        with pytest.raises(naq.NaqConnectionError) as caught:
            await queue.connection()
        await queue.close()
        await asyncio.sleep(0.2)  # anything sent has arrived
        assert_nothing_sent(fake, str(caught.value))


async def test_tls_url_to_a_plain_server_sends_no_password_enqueue_sync() -> None:
    async with FakeNats(AUTH_INFO) as fake:
        with pytest.raises(naq.NaqConnectionError) as caught:
            await asyncio.to_thread(naq.enqueue_sync, print, 1, nats_url=tls_url(fake))
        await asyncio.sleep(0.2)
        assert_nothing_sent(fake, str(caught.value))


async def test_tls_url_to_a_plain_server_sends_no_password_blocking_client() -> None:
    """The blocking client itself (``enqueue_sync`` once the server's storage is known)."""
    from naq.settings import load_settings
    from naq.transport.blocking import BlockingClient

    async with FakeNats(AUTH_INFO) as fake:
        client = BlockingClient(load_settings(tls_url(fake)))
        started = time.monotonic()
        with pytest.raises(naq.NaqConnectionError) as caught:
            await asyncio.to_thread(client.request_many, [("naq.queue.default", None, b"{}")])
        assert time.monotonic() - started < 1.5  # refused on INFO, not after a handshake
        await asyncio.sleep(0.2)
        assert_nothing_sent(fake, str(caught.value))
        assert fake.received == b"", "not even a TLS handshake is started"
