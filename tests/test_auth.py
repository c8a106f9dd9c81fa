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
from tests import jobs
from tests.cli_run import naq_cli
from tests.fake_nats import AUTH_INFO, FakeNats
from tests.helpers import WAIT, running_worker

import naq
from naq.server import EmbeddedServer
from naq.settings import Settings, load_settings

ADMIN = ("admin", "s3cret-admin")
LIMITED = ("limited", "s3cret-limited")
NO_KV = ("nokv", "s3cret-nokv")
NO_INBOX = ("noinbox", "s3cret-noinbox")
#: May receive replies on ``_INBOX_own.>`` only (not on NATS' default ``_INBOX.>``).
OWN_INBOX = ("ownbox", "s3cret-ownbox")
OWN_PREFIX = "_INBOX_own"
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
    {user: "ownbox", password: "s3cret-ownbox", permissions: {
      publish: {allow: ["$JS.API.>", "$JS.ACK.>", "naq.>", "$KV.>"]}
      subscribe: {allow: ["_INBOX_own.>", "$KV.naq_results.>", "naq.queue.>"]}
    }}
  ]
}
"""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A JetStream server whose users need a password, most of them with few permissions."""
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
@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
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
        with pytest.raises(naq.LoginRefusedError) as caught:  # permanent: never retried
            await queue.connection()
        await queue.close()
        message = str(caught.value)
        assert "refused the login (authorization violation)" in message, (attempt, message)
        assert WRONG_PASSWORD not in message


def test_wrong_password_in_enqueue_sync(auth_server: EmbeddedServer) -> None:
    url = url_for(auth_server, "admin", WRONG_PASSWORD)
    with pytest.raises(naq.LoginRefusedError, match="refused the login"):
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


@pytest.mark.slow  # a wait by design (restart, lease, timeout, retries): make test-slow
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


# -- a reply inbox of one's own (NAQ_NATS_INBOX_PREFIX) ------------------------------------------
async def test_an_own_inbox_prefix_lets_a_user_limited_to_it_do_everything(
    auth_server: EmbeddedServer, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user who may receive replies on ``_INBOX_own.>`` only: with the prefix set, the
    async and the blocking enqueue, a worker and waiting for a result all get their replies."""
    url = url_for(auth_server, *OWN_INBOX)
    monkeypatch.setenv("NAQ_NATS_INBOX_PREFIX", OWN_PREFIX)
    assert load_settings(url).inbox_prefix == OWN_PREFIX
    try:
        first = await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=url)
        # twice: the first ensures storage on the shared loop, the second is published by
        # the blocking client from this thread
        second = await asyncio.to_thread(
            naq.enqueue_sync, jobs.add, 3, 4, queue_name=queue, nats_url=url
        )
        third = await asyncio.to_thread(
            naq.enqueue_sync, jobs.add, 5, 6, queue_name=queue, nats_url=url
        )
        async with running_worker([queue], url, concurrency=2):
            results = [
                await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=url)
                for job in (first, second, third)
            ]
        assert results == [3, 7, 11]
    finally:
        await naq.close()


async def test_the_default_inbox_prefix_is_refused_to_that_user_naming_why(
    auth_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same user without the prefix (NATS' default ``_INBOX``): a JetStream request gets
    no answer and its timeout says the subscription to the replies was refused; the blocking
    client of ``enqueue_sync`` is refused on connect. (A 1 s request rather than a whole
    enqueue, which waits naq's 10 s API timeout: see the ``noinbox`` test above.)"""
    from naq.transport.blocking import BlockingClient

    monkeypatch.delenv("NAQ_NATS_INBOX_PREFIX", raising=False)
    url = url_for(auth_server, *OWN_INBOX)
    queue = naq.Queue(nats_url=url)
    try:
        conn = await queue.connection()
        with pytest.raises(naq.NaqConnectionError) as caught:
            await conn.api("INFO", {}, timeout=1.0)
    finally:
        await queue.close()
    assert_subscription_to_default_inbox_refused(str(caught.value))
    client = BlockingClient(load_settings(url))
    with pytest.raises(naq.NaqConnectionError) as refused:
        await asyncio.to_thread(client.request_many, [("naq.queue.default", None, b"{}")], 1.0)
    client.close()
    assert_subscription_to_default_inbox_refused(str(refused.value))


def assert_subscription_to_default_inbox_refused(message: str) -> None:
    """``message`` names the refused subscription to an inbox under ``_INBOX.`` (the server
    says it in lower or in title case)."""
    assert 'permissions violation for subscription to "_inbox.' in message.lower(), message


#: Wildcards, a space, an empty token, too long, control characters (the environment
#: cannot hold a NUL: that one is tried on ``Settings`` only).
BAD_INBOX_PREFIXES = ["_INBOX.*", "_INBOX.>", "a b", "x.", "p" * 300, "_INBOX\nown", "_IN\x1bBOX"]


def short_id(prefix: str) -> str:
    """A test id for ``prefix``: its repr, cut short."""
    return repr(prefix)[:20]


@pytest.mark.parametrize("prefix", BAD_INBOX_PREFIXES, ids=short_id)
def test_a_bad_inbox_prefix_in_the_environment_names_the_variable(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_NATS_INBOX_PREFIX", prefix)
    with pytest.raises(naq.ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "NAQ_NATS_INBOX_PREFIX" in message, message
    assert len(message) < 300, message


@pytest.mark.parametrize("prefix", [*BAD_INBOX_PREFIXES, "_INBOX\x00own"], ids=short_id)
def test_a_bad_inbox_prefix_in_settings_names_the_field(prefix: str) -> None:
    with pytest.raises(naq.ConfigurationError) as caught:
        Settings(inbox_prefix=prefix)
    message = str(caught.value)
    assert "inbox_prefix" in message, message
    assert "NAQ_NATS_INBOX_PREFIX" not in message, message


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
        with pytest.raises(naq.LoginRefusedError) as caught:  # permanent: never retried
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
