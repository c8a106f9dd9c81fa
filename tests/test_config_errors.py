"""Configuration errors reach the user as one clear line naming what was wrong.

On the command line: exactly one line on stderr and exit code 1, never a traceback or a
"coroutine ... was never awaited" warning. In the Python API: a
:class:`~naq.errors.ConfigurationError` raised by the call that got the bad setting, with
nothing stored.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nkeys  # type: ignore[import-untyped]
import pytest
from tests.cli_run import CliResult, naq_cli

import naq
from conftest import JOBS_STREAM, RESULTS_STREAM, stream_count

COMMANDS = [
    ["queues"],
    ["worker"],
    ["scheduler"],
    ["dlq", "list"],
    ["job", "X"],
    ["list-scheduled"],
]
BAD_SETTINGS = {"NAQ_NATS_URL": "http://x", "NAQ_LOG_LEVEL": "bogus"}


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def assert_one_line(result: CliResult, *names: str) -> str:
    """The command failed with exactly one line on stderr that names each of ``names``."""
    assert result.code == 1, (result.code, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "never awaited" not in result.stderr, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    for name in names:
        assert name in line, line
    return line


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def credentials_text(seed: bytes | None = None, jwt: str | None = None) -> str:
    """A credentials file in the layout ``nsc`` writes (the JWT is well-formed, unsigned)."""
    if seed is None:
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    if jwt is None:
        jwt = f"{_b64({'typ': 'JWT', 'alg': 'ed25519-nkey'})}.{_b64({'sub': 'U'})}.c2ln"
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )


# -- NAQ_NATS_CREDS ---------------------------------------------------------------------------
def test_missing_creds_file_is_one_line(nats_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.creds"
    result = naq_cli("queues", env={"NAQ_NATS_URL": nats_url, "NAQ_NATS_CREDS": str(missing)})
    line = assert_one_line(result, "NAQ_NATS_CREDS", str(missing))
    assert "no such file" in line


@pytest.mark.parametrize(
    ("contents", "problem"),
    [
        ("garbage\n", "BEGIN NATS USER JWT"),
        ("", "BEGIN NATS USER JWT"),
        (credentials_text().split("************")[0], "BEGIN USER NKEY SEED"),
        (credentials_text(seed=b"SUNOTASEED"), "not a valid seed"),
        (credentials_text(jwt="not-a-jwt"), "JWT"),
    ],
    ids=["garbage", "empty", "no-seed", "bad-seed", "bad-jwt"],
)
def test_malformed_creds_file_is_one_line(
    nats_url: str, tmp_path: Path, contents: str, problem: str
) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text(contents)
    result = naq_cli("queues", env={"NAQ_NATS_URL": nats_url, "NAQ_NATS_CREDS": str(creds)})
    line = assert_one_line(result, "NAQ_NATS_CREDS", "not a usable NATS credentials file")
    assert problem in line


async def test_malformed_creds_file_in_the_api(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text("garbage\n")
    monkeypatch.setenv("NAQ_NATS_CREDS", str(creds))
    queue = naq.Queue(nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match="NAQ_NATS_CREDS"):
        await queue.connection()
    await queue.close()


def test_well_formed_creds_file_is_used(nats_url: str, tmp_path: Path) -> None:
    """A file in the right layout passes the check (this server asks for no credentials)."""
    creds = tmp_path / "user.creds"
    creds.write_text(credentials_text())
    result = naq_cli("queues", env={"NAQ_NATS_URL": nats_url, "NAQ_NATS_CREDS": str(creds)})
    assert result.code == 0, result.stderr


def test_creds_without_the_nkeys_package_is_one_line(nats_url: str, tmp_path: Path) -> None:
    """Without ``nkeys`` installed, a creds file used to end every command in a
    ModuleNotFoundError traceback from inside nats-py."""
    creds = tmp_path / "user.creds"
    creds.write_text(credentials_text())
    result = naq_cli(
        "queues",
        env={"NAQ_NATS_URL": nats_url, "NAQ_NATS_CREDS": str(creds)},
        python_code="import sys; sys.modules['nkeys'] = None  # as if not installed",
    )
    line = assert_one_line(result, "NAQ_NATS_CREDS", "nkeys")
    assert "pip install" in line


# -- NAQ_NATS_TLS_* ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "extra"),
    [
        ("NAQ_NATS_TLS_CA", {}),
        ("NAQ_NATS_TLS_CERT", {"NAQ_NATS_TLS_KEY": __file__}),
        ("NAQ_NATS_TLS_KEY", {"NAQ_NATS_TLS_CERT": __file__}),
    ],
)
def test_missing_tls_file_is_one_line(
    nats_url: str, tmp_path: Path, variable: str, extra: dict[str, str]
) -> None:
    missing = str(tmp_path / "missing.pem")
    env = {"NAQ_NATS_URL": nats_url, variable: missing, **extra}
    line = assert_one_line(naq_cli("queues", env=env), variable, missing)
    assert "no such file" in line


async def test_missing_tls_ca_in_the_api(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = str(tmp_path / "ca.pem")
    monkeypatch.setenv("NAQ_NATS_TLS_CA", missing)
    queue = naq.Queue(nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match=f"NAQ_NATS_TLS_CA='{missing}'"):
        await queue.connection()
    await queue.close()


def test_missing_tls_ca_in_enqueue_sync(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_NATS_TLS_CA", str(tmp_path / "ca.pem"))
    with pytest.raises(naq.ConfigurationError, match="NAQ_NATS_TLS_CA"):
        naq.enqueue_sync(print, 1, nats_url=nats_url)


def test_unusable_tls_ca_is_one_line(nats_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    env = {"NAQ_NATS_URL": nats_url, "NAQ_NATS_TLS_CA": str(bad)}
    line = assert_one_line(naq_cli("queues", env=env), "NAQ_NATS_TLS_CA")
    assert "not a usable CA file" in line


# -- settings read by every command -------------------------------------------------------------
@pytest.mark.parametrize("variable", sorted(BAD_SETTINGS))
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_bad_setting_is_one_line_for_every_command(command: list[str], variable: str) -> None:
    value = BAD_SETTINGS[variable]
    result = naq_cli(*command, env={variable: value})
    line = assert_one_line(result)
    assert variable in line or repr(value) in line, line


# -- options of enqueue_many ------------------------------------------------------------------
async def stored_counts(nats_url: str) -> tuple[int, int]:
    """Messages in the jobs stream and in the results bucket's stream."""
    return await stream_count(nats_url, JOBS_STREAM), await stream_count(nats_url, RESULTS_STREAM)


CALLS: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [(print, (1,), {}), (print, (2,), {})]


@pytest.mark.parametrize(
    "enqueue_many",
    [
        lambda url, queue, **options: naq.enqueue_many(
            CALLS, queue_name=queue, nats_url=url, **options
        ),
        lambda url, queue, **options: naq.Queue(queue, nats_url=url).enqueue_many(CALLS, **options),
    ],
    ids=["naq.enqueue_many", "Queue.enqueue_many"],
)
@pytest.mark.parametrize("option", ["atomically", "max_retires"])
async def test_enqueue_many_refuses_unknown_options(
    nats_url: str, queue: str, option: str, enqueue_many: Callable[..., Any]
) -> None:
    await naq.enqueue(print, 0, queue_name=queue, nats_url=nats_url)  # storage exists
    before = await stored_counts(nats_url)
    with pytest.raises(naq.ConfigurationError, match=option):
        await enqueue_many(nats_url, queue, **{option: True})
    after = await stored_counts(nats_url)
    assert after == before, f"(jobs, records) before {before}, after {after}"


@pytest.mark.parametrize("option", ["atomically", "max_retires"])
async def test_enqueue_many_sync_refuses_unknown_options(
    nats_url: str, queue: str, option: str
) -> None:
    await naq.enqueue(print, 0, queue_name=queue, nats_url=nats_url)
    before = await stored_counts(nats_url)
    with pytest.raises(naq.ConfigurationError, match=option):
        naq.enqueue_many_sync(CALLS, queue_name=queue, nats_url=nats_url, **{option: True})
    after = await stored_counts(nats_url)
    assert after == before, f"(jobs, records) before {before}, after {after}"
