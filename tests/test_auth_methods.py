"""Each way to log in to NATS, against a real server configured for it: user/password and
token in the URL, a user nkey seed file (``NAQ_NATS_NKEY``), and a creds file
(``NAQ_NATS_CREDS``) against a server in operator mode with hand-made JWTs.

The right credentials run a job; a wrong one is one clear ``NaqConnectionError`` naming the
refused login from every surface (API, ``enqueue_sync``, a worker's start, the CLI), after
one connection attempt. No secret ever appears in a log line, an error or a ``repr``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nkeys  # type: ignore[import-untyped]
import pytest
from tests.cli_run import naq_cli
from tests.helpers import running_worker
from tests.jobs import add
from tests.login_checks import (
    Login,
    assert_no_secret,
    assert_one_quick_attempt,
    captured_logs,
    refused_by_api,
    refused_by_cli,
    refused_by_enqueue_sync,
    refused_by_worker,
)
from tests.nats_auth import ConfiguredServer, new_nkey, new_user_nkey, operator_setup

import naq
from naq.settings import load_settings
from naq.transport import Connection

REFUSED = "refused the login (authorization violation)"
PASSWORD = "pw-Good-7f3a9c1e"
WRONG_PASSWORD = "pw-Wrong-0b8d2e44"
TOKEN = "tok-Good-5e1f7a2b9c"
WRONG_TOKEN = "tok-Wrong-3c9d0e6f1a"
METHODS = ["password", "token", "nkey", "creds"]


@dataclass(frozen=True)
class Method:
    """A server that wants one way of logging in, a login it accepts and one it refuses."""

    server: ConfiguredServer
    good: Login
    bad: Login


def _start(stack: contextlib.ExitStack, directory: Path, config: str) -> ConfiguredServer:
    return stack.enter_context(ConfiguredServer(directory, config))


@pytest.fixture(scope="module")
def methods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Method]]:
    """One server per method, with a good and a bad login for each."""
    root = tmp_path_factory.mktemp("auth-methods")
    found: dict[str, Method] = {}
    with contextlib.ExitStack() as stack:
        config = f'authorization {{ users = [ {{user: "alice", password: "{PASSWORD}"}} ] }}\n'
        server = _start(stack, root / "password", config)
        found["password"] = Method(
            server,
            Login(server.url(auth=f"alice:{PASSWORD}"), secrets=(PASSWORD,)),
            Login(server.url(auth=f"alice:{WRONG_PASSWORD}"), secrets=(WRONG_PASSWORD,)),
        )

        server = _start(stack, root / "token", f'authorization {{ token: "{TOKEN}" }}\n')
        found["token"] = Method(
            server,
            Login(server.url(auth=TOKEN), secrets=(TOKEN,)),
            Login(server.url(auth=WRONG_TOKEN), secrets=(WRONG_TOKEN,)),
        )

        user, stranger = new_user_nkey(), new_user_nkey()
        config = f'authorization {{ users = [ {{nkey: "{user.public}"}} ] }}\n'
        server = _start(stack, root / "nkey", config)
        good_seed, bad_seed = root / "user.nk", root / "stranger.nk"
        good_seed.write_bytes(user.seed + b"\n")
        bad_seed.write_bytes(stranger.seed + b"\n")
        found["nkey"] = Method(
            server,
            Login(server.url(), {"NAQ_NATS_NKEY": str(good_seed)}, (user.seed.decode(),)),
            Login(server.url(), {"NAQ_NATS_NKEY": str(bad_seed)}, (stranger.seed.decode(),)),
        )

        operator = operator_setup()
        server = _start(stack, root / "creds", operator.server_config())
        good_creds, bad_creds = root / "user.creds", root / "stranger.creds"
        good_creds.write_text(operator.user_creds())
        # a user of an account the server does not know
        bad_creds.write_text(operator.user_creds(account=new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)))
        found["creds"] = Method(
            server,
            Login(server.url(), {"NAQ_NATS_CREDS": str(good_creds)}, _creds_secrets(good_creds)),
            Login(server.url(), {"NAQ_NATS_CREDS": str(bad_creds)}, _creds_secrets(bad_creds)),
        )
        yield found


def _creds_secrets(path: Path) -> tuple[str, ...]:
    """The user JWT and the seed in a creds file."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return tuple(lines[i + 1] for i, line in enumerate(lines) if line.startswith("-----BEGIN"))


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """``enqueue_sync``'s loop thread caches its connections per URL: never let one made
    with other credentials serve the next test."""
    yield
    naq.run_sync(naq.close())


# -- the right credentials --------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
async def test_the_right_credentials_run_a_job(
    methods: dict[str, Method], method: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = methods[method].good
    login.apply(monkeypatch)
    with captured_logs() as logs:
        producer = naq.Queue(queue, nats_url=login.url)
        try:
            job = await producer.enqueue(add, 2, 3)
            async with running_worker([queue], login.url) as worker:
                assert await job.result(timeout=15) == 5
                shown = [repr(worker), repr(producer), repr(producer.settings)]
                shown.append(repr(await producer.connection()))
        finally:
            await producer.close()
    assert_no_secret(login, *logs, *shown)


@pytest.mark.parametrize("method", ["password", "token", "creds"])
def test_the_right_credentials_in_enqueue_sync(
    methods: dict[str, Method], method: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = methods[method].good
    login.apply(monkeypatch)
    job = naq.enqueue_sync(add, 2, 3, queue_name=queue, nats_url=login.url)
    assert job.queue_name == queue


def test_the_right_nkey_in_enqueue_sync(
    methods: dict[str, Method], queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = methods["nkey"].good
    login.apply(monkeypatch)
    job = naq.enqueue_sync(add, 2, 3, queue_name=queue, nats_url=login.url)
    assert job.queue_name == queue


def test_the_right_creds_in_the_cli(methods: dict[str, Method]) -> None:
    """One method only: each CLI run costs half a second (the refusals are run for all)."""
    login = methods["creds"].good
    result = naq_cli("queues", env=login.cli_env())
    assert result.code == 0, result.stderr
    assert_no_secret(login, result.stdout, result.stderr)


# -- a wrong credential: one clear error, one attempt, no secret shown --------------------------
@pytest.mark.parametrize("method", METHODS)
async def test_a_wrong_credential_in_the_api(
    methods: dict[str, Method], method: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = methods[method]
    found.bad.apply(monkeypatch)
    with captured_logs() as logs:
        refusal = await refused_by_api(found.server, found.bad, queue)
    assert REFUSED in refusal.message, refusal.message
    assert_one_quick_attempt(refusal)
    assert_no_secret(found.bad, *logs, *refusal.texts)


@pytest.mark.parametrize("method", METHODS)
async def test_a_wrong_credential_in_enqueue_sync(
    methods: dict[str, Method], method: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = methods[method]
    found.bad.apply(monkeypatch)
    with captured_logs() as logs:
        refusal = await refused_by_enqueue_sync(found.server, found.bad, queue)
    assert REFUSED in refusal.message, refusal.message
    assert_one_quick_attempt(refusal)
    assert_no_secret(found.bad, *logs, *refusal.texts)


@pytest.mark.parametrize("method", METHODS)
async def test_a_wrong_credential_at_a_workers_start(
    methods: dict[str, Method], method: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = methods[method]
    found.bad.apply(monkeypatch)
    with captured_logs() as logs:
        refusal = await refused_by_worker(found.server, found.bad, queue)
    assert REFUSED in refusal.message, refusal.message
    assert_one_quick_attempt(refusal)
    assert_no_secret(found.bad, *logs, *refusal.texts)


@pytest.mark.parametrize("method", METHODS)
def test_a_wrong_credential_in_the_cli(methods: dict[str, Method], method: str) -> None:
    found = methods[method]
    refusal, _ = refused_by_cli(found.server, found.bad)
    assert REFUSED in refusal.message, refusal.message
    assert_one_quick_attempt(refusal, within=15)
    assert_no_secret(found.bad, *refusal.texts)


# -- NAQ_NATS_NKEY that cannot be used ---------------------------------------------------------
def _nkey_error(monkeypatch: pytest.MonkeyPatch, path: Path) -> str:
    """The error connecting with ``NAQ_NATS_NKEY=path`` gives (before any connection)."""
    monkeypatch.setenv("NAQ_NATS_NKEY", str(path))
    connection = Connection(load_settings("nats://127.0.0.1:1"))
    with pytest.raises(naq.ConfigurationError) as caught:
        naq.run_sync(connection.connect())
    return str(caught.value)


def test_a_missing_nkey_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NAQ_NATS_CREDS", raising=False)
    message = _nkey_error(monkeypatch, tmp_path / "absent.nk")
    assert "NAQ_NATS_NKEY=" in message and "no such file" in message, message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"not a seed at all\n", "starting with 'SU'"),
        (b"-----BEGIN NATS USER JWT-----\nx.y.z\n", "set NAQ_NATS_CREDS"),
    ],
)
def test_an_nkey_file_that_is_no_seed_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "bad.nk"
    path.write_bytes(content)
    monkeypatch.delenv("NAQ_NATS_CREDS", raising=False)
    message = _nkey_error(monkeypatch, path)
    assert message.startswith(f"NAQ_NATS_NKEY={str(path)!r} is not a user nkey seed"), message
    assert problem in message, message


def test_an_account_seed_is_not_a_user_seed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    account = new_nkey(nkeys.PREFIX_BYTE_ACCOUNT)
    path = tmp_path / "account.nk"
    path.write_bytes(account.seed)
    monkeypatch.delenv("NAQ_NATS_CREDS", raising=False)
    message = _nkey_error(monkeypatch, path)
    assert "not of a user" in message, message
    assert account.seed.decode() not in message


def test_nkey_and_creds_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    user = new_user_nkey()
    path = tmp_path / "user.nk"
    path.write_bytes(user.seed)
    creds = tmp_path / "user.creds"
    creds.write_text(operator_setup().user_creds())
    monkeypatch.setenv("NAQ_NATS_CREDS", str(creds))
    message = _nkey_error(monkeypatch, path)
    assert "NAQ_NATS_CREDS and NAQ_NATS_NKEY are both set" in message, message


# -- repr -------------------------------------------------------------------------------------
def test_settings_repr_hides_passwords_and_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAQ_NATS_URL", raising=False)
    url = f"nats://alice:{PASSWORD}@127.0.0.1:4222,nats://{TOKEN}@127.0.0.2:4222"
    settings = load_settings(url)
    assert PASSWORD not in repr(settings) and TOKEN not in repr(settings), repr(settings)
    assert "nats://alice:***@127.0.0.1:4222" in repr(settings)
    assert settings.nats_url == url  # the real URLs are still used


async def test_shared_connections_are_kept_apart_by_login(nats_url: str, tmp_path: Path) -> None:
    # same URL, another identity (a server without auth accepts the nkey login too): a
    # connection opened for one login must never serve the other
    seed = tmp_path / "user.nk"
    seed.write_bytes(new_user_nkey().seed)
    plain = load_settings(nats_url)
    with_nkey = dataclasses.replace(plain, nkey_file=str(seed))
    try:
        first = await naq.api.shared_connection(settings=plain)
        second = await naq.api.shared_connection(settings=with_nkey)
        assert first is not second
        assert await naq.api.shared_connection(settings=plain) is first
    finally:
        await naq.close()
