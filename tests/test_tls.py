"""TLS against real servers with certificates made by the test (``trustme``): a server with
a custom CA (``NAQ_NATS_TLS_CA``, with ``tls://`` or ``nats://`` URLs), and one that verifies
client certificates (``NAQ_NATS_TLS_CERT``/``NAQ_NATS_TLS_KEY``).

A client that does not trust the server, lacks a client certificate or has one the server
does not trust gets one clear ``NaqConnectionError`` naming the cause, after one connection
attempt, from every surface; the private key never appears in anything naq shows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.cli_run import naq_cli
from tests.helpers import running_worker
from tests.jobs import add
from tests.login_checks import (
    Login,
    Refusal,
    assert_no_secret,
    assert_one_quick_attempt,
    captured_logs,
    refused_by_api,
    refused_by_cli,
    refused_by_enqueue_sync,
    refused_by_worker,
    secret_lines,
)
from tests.nats_auth import ConfiguredServer, TlsFiles, make_tls_files, tls_block

import naq

NOT_TRUSTED = "the server's certificate did not pass verification"
NO_CLIENT_CERT = "requires a TLS client certificate (tls verify) and none is set"
CLIENT_CERT_REFUSED = "refused the TLS client certificate in NAQ_NATS_TLS_CERT"


@dataclass(frozen=True)
class TlsServers:
    """A TLS server (custom CA) and one that also verifies client certificates."""

    files: TlsFiles
    plain: ConfiguredServer
    verify: ConfiguredServer


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServers]:
    root = tmp_path_factory.mktemp("tls")
    files = make_tls_files(root)
    with contextlib.ExitStack() as stack:
        plain = stack.enter_context(
            ConfiguredServer(root / "plain", tls_block(files, verify=False))
        )
        verify = stack.enter_context(
            ConfiguredServer(root / "verify", tls_block(files, verify=True))
        )
        yield TlsServers(files, plain, verify)


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """``enqueue_sync``'s loop thread caches its connections per URL: never let one made
    with other certificates serve the next test."""
    yield
    naq.run_sync(naq.close())


def _with_client_cert(servers: TlsServers, cert: str, key: str) -> Login:
    files = servers.files
    return Login(
        servers.verify.url("tls"),
        {"NAQ_NATS_TLS_CA": str(files.ca), "NAQ_NATS_TLS_CERT": cert, "NAQ_NATS_TLS_KEY": key},
        secret_lines(key),
    )


def good_logins(servers: TlsServers) -> dict[str, Login]:
    """Logins each server accepts."""
    files = servers.files
    ca = {"NAQ_NATS_TLS_CA": str(files.ca)}
    secrets = secret_lines(str(files.client_key))  # nothing secret in a CA: the key instead
    return {
        "tls-url": Login(servers.plain.url("tls"), ca, secrets),
        "nats-url": Login(servers.plain.url("nats"), ca, secrets),
        "client-cert": _with_client_cert(servers, str(files.client_cert), str(files.client_key)),
    }


GOOD = ["tls-url", "nats-url", "client-cert"]


def bad_login(servers: TlsServers, case: str) -> tuple[ConfiguredServer, Login, str]:
    """A login the server refuses, and what the error must say."""
    files = servers.files
    if case == "untrusted-server":
        login = Login(
            servers.plain.url("tls"),
            {"NAQ_NATS_TLS_CA": str(files.other_ca)},
            secret_lines(str(files.client_key)),
        )
        return servers.plain, login, NOT_TRUSTED
    if case == "no-client-cert":
        login = Login(
            servers.verify.url("tls"),
            {"NAQ_NATS_TLS_CA": str(files.ca)},
            secret_lines(str(files.client_key)),
        )
        return servers.verify, login, NO_CLIENT_CERT
    assert case == "untrusted-client-cert"
    login = _with_client_cert(servers, str(files.other_client_cert), str(files.other_client_key))
    return servers.verify, login, CLIENT_CERT_REFUSED


BAD = ["untrusted-server", "no-client-cert", "untrusted-client-cert"]


# -- what works -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", GOOD)
async def test_tls_runs_a_job(
    servers: TlsServers, case: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = good_logins(servers)[case]
    login.apply(monkeypatch)
    with captured_logs() as logs:
        producer = naq.Queue(queue, nats_url=login.url)
        try:
            job = await producer.enqueue(add, 2, 3)
            async with running_worker([queue], login.url) as worker:
                assert await job.result(timeout=15) == 5
                shown = [repr(worker), repr(producer), repr(producer.settings)]
        finally:
            await producer.close()
    assert_no_secret(login, *logs, *shown)


@pytest.mark.parametrize("case", GOOD)
def test_tls_in_enqueue_sync(
    servers: TlsServers, case: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = good_logins(servers)[case]
    login.apply(monkeypatch)
    job = naq.enqueue_sync(add, 2, 3, queue_name=queue, nats_url=login.url)
    assert job.queue_name == queue


def test_a_client_certificate_in_the_cli(servers: TlsServers) -> None:
    """One case only: each CLI run costs half a second (the refusals are run for all)."""
    login = good_logins(servers)["client-cert"]
    result = naq_cli("queues", env=login.cli_env())
    assert result.code == 0, result.stderr
    assert_no_secret(login, result.stdout, result.stderr)


# -- what is refused: one clear error, one attempt, no secret shown -----------------------------
def _check(refusal: Refusal, login: Login, expected: str, *logs: str) -> None:
    assert expected in refusal.message, refusal.message
    assert_one_quick_attempt(refusal)
    assert_no_secret(login, *logs, *refusal.texts)


@pytest.mark.parametrize("case", BAD)
async def test_refused_tls_in_the_api(
    servers: TlsServers, case: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, login, expected = bad_login(servers, case)
    login.apply(monkeypatch)
    with captured_logs() as logs:
        refusal = await refused_by_api(server, login, queue)
    _check(refusal, login, expected, *logs)


@pytest.mark.parametrize("case", BAD)
async def test_refused_tls_in_enqueue_sync(
    servers: TlsServers, case: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, login, expected = bad_login(servers, case)
    login.apply(monkeypatch)
    with captured_logs() as logs:
        refusal = await refused_by_enqueue_sync(server, login, queue)
    _check(refusal, login, expected, *logs)


@pytest.mark.parametrize("case", BAD)
async def test_refused_tls_at_a_workers_start(
    servers: TlsServers, case: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, login, expected = bad_login(servers, case)
    login.apply(monkeypatch)
    with captured_logs() as logs:
        refusal = await refused_by_worker(server, login, queue)
    _check(refusal, login, expected, *logs)


@pytest.mark.parametrize("case", BAD)
def test_refused_tls_in_the_cli(servers: TlsServers, case: str) -> None:
    server, login, expected = bad_login(servers, case)
    refusal, _ = refused_by_cli(server, login)
    assert expected in refusal.message, refusal.message
    assert_one_quick_attempt(refusal, within=15)
    assert_no_secret(login, *refusal.texts)
