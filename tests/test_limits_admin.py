"""Shared limit definitions (``naq.limits``): checking, storing, listing and deleting them
through every surface (async helpers, ``_sync`` twins, ``SyncClient``, ``naq limits``), and
the ``LimitBook`` a worker keeps of them, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats.js.errors
import pytest
from tests.cli_run import naq_cli

import naq
from conftest import raw_nats, wait_for
from naq import limits
from naq.errors import ConfigurationError
from naq.limits import ConcreteLimit, LimitBook, LimitDefinitions, LimitSpec, Rate
from naq.settings import load_settings
from naq.transport import Connection

BUCKET_STREAM = "KV_naq_limits"
#: How soon a running book must see a definition set or deleted elsewhere.
WITHIN = 1.0

BAD_NAMES = ["a b", "*", "user:*x", ".", "", "user:**", "a.b", "x" * 129, "queue:", "queue:a:b"]
BAD_RATES = ["100", "0/s", "10/d", "x/s", "10/S", "-1/s", "1.5/s", "10 / s", "10/s\n", "/s"]
BAD_CONCURRENCY: list[Any] = [0, -1, True, "1", 1.0, 10**7]


async def _purge_bucket(nats_url: str) -> None:
    async with raw_nats(nats_url) as nc:
        try:
            await nc.jetstream().purge_stream(BUCKET_STREAM)
        except nats.js.errors.NotFoundError:
            pass


@pytest.fixture(autouse=True)
async def _no_limits_left(nats_url: str) -> AsyncIterator[None]:
    """Each test starts and ends with no definitions (one server serves the whole module)."""
    await _purge_bucket(nats_url)
    yield
    await _purge_bucket(nats_url)


@pytest.fixture
async def conn(nats_url: str) -> AsyncIterator[Connection]:
    connection = await Connection(load_settings(nats_url), name="test-limits").connect()
    try:
        yield connection
    finally:
        await connection.close()


async def stored_keys(nats_url: str) -> list[str]:
    """The live keys of the limits bucket, read with plain nats-py (no naq involved)."""
    async with raw_nats(nats_url) as nc:
        try:
            bucket = await nc.jetstream().key_value("naq_limits")
            return sorted(await bucket.keys())
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NoKeysError):
            return []


# ------------------------------------------------------------------- checking (no server)


@pytest.mark.parametrize(
    ("text", "count", "per"), [("100/s", 100, 1.0), ("10/m", 10, 60.0), ("500/h", 500, 3600.0)]
)
def test_rates_parse_and_print_back(text: str, count: int, per: float) -> None:
    rate = Rate.parse(text)
    assert (rate.count, rate.per) == (count, per)
    assert str(rate) == text
    assert rate.per_second == count / per
    assert str(Rate.parse("007/m")) == "7/m"  # canonical text


@pytest.mark.parametrize("rate", BAD_RATES)
def test_a_bad_rate_is_refused_naming_it(rate: str) -> None:
    with pytest.raises(ConfigurationError, match="rate"):
        limits.define("stripe", rate=rate)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_name_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ConfigurationError, match="limit name"):
        limits.define(name, concurrency=1)


@pytest.mark.parametrize("concurrency", BAD_CONCURRENCY)
def test_a_bad_concurrency_is_refused(concurrency: Any) -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        limits.define("stripe", concurrency=concurrency)


def test_a_limit_needs_a_concurrency_or_a_rate() -> None:
    with pytest.raises(ConfigurationError, match="needs a concurrency, a rate or both"):
        limits.define("stripe")
    with pytest.raises(ConfigurationError, match="limit name must be a string"):
        limits.define(5, concurrency=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("stripe", "one.stripe"),
        ("user:42", "one.user=42"),
        ("user:*", "fam.user="),
        ("tenant-a:user:*", "fam.tenant-a=user="),
        ("queue:emails", "one.queue=emails"),
        ("queue:*", "fam.queue="),
        ("q*", "fam.q"),
    ],
)
def test_storage_keys_are_valid_key_value_keys_and_read_back(name: str, key: str) -> None:
    assert limits.storage_key(name) == key
    assert limits.name_of_key(key) == name
    # every NATS client checks keys against this (nats-py's and the Go client's rule)
    assert nats.js.kv.VALID_KEY_RE.match(key) and not key.endswith(".")


def test_a_key_naq_did_not_write_has_no_name() -> None:
    for key in ("stripe", "one.a b", "fam.", "one.user=*", "other.x"):
        assert limits.name_of_key(key) is None


def _definitions(*specs: LimitSpec) -> LimitDefinitions:
    return LimitDefinitions(specs)


STRIPE = limits.define("stripe", rate="100/s")
USERS = limits.define("user:*", concurrency=1)
VIP_USERS = limits.define("user:vip:*", concurrency=5)
USER_42 = limits.define("user:42", concurrency=3)
EMAILS = limits.define("queue:emails", rate="10/m")
QUEUES = limits.define("queue:*", concurrency=50)
BROAD = limits.define("q*", concurrency=2)


def test_resolve_prefers_the_exact_name_then_the_longest_family() -> None:
    book = _definitions(STRIPE, USERS, VIP_USERS, USER_42)
    names = ["stripe", "user:7", "user:vip:1", "user:42", "nobody-defined-me"]
    assert book.resolve(names, "default") == [
        ConcreteLimit("stripe", STRIPE),
        ConcreteLimit("user:7", USERS),
        ConcreteLimit("user:vip:1", VIP_USERS),
        ConcreteLimit("user:42", USER_42),
    ]
    assert book.match("user:") is USERS  # a family's own prefix is one of its names
    assert book.match("users") is None
    assert book.get("user:*") is USERS and book.get("user:7") is None
    assert [s.name for s in book] == ["stripe", "user:*", "user:42", "user:vip:*"]


def test_resolve_adds_the_queue_limit_the_job_did_not_name() -> None:
    book = _definitions(STRIPE, EMAILS, BROAD)
    assert book.resolve(["stripe"], "emails") == [
        ConcreteLimit("stripe", STRIPE),
        ConcreteLimit("queue:emails", EMAILS),
    ]
    # named too: once; another queue: not limited by emails' limit, nor by the family 'q*'
    assert book.resolve(["queue:emails"], "emails") == [ConcreteLimit("queue:emails", EMAILS)]
    assert book.resolve([], "reports") == []
    # a queue family gives every queue its own limit; an exact queue limit beats it
    book = _definitions(EMAILS, QUEUES)
    assert book.resolve([], "reports") == [ConcreteLimit("queue:reports", QUEUES)]
    assert book.resolve([], "emails") == [ConcreteLimit("queue:emails", EMAILS)]


def test_resolve_without_definitions_and_duplicates() -> None:
    assert LimitDefinitions().resolve(["stripe", "user:1"], "default") == []
    book = _definitions(USERS)
    assert book.resolve(["user:1", "user:1", "user:2"], "q") == [
        ConcreteLimit("user:1", USERS),
        ConcreteLimit("user:2", USERS),
    ]
    assert ConcreteLimit("user:1", USERS).token == "user=1"


# --------------------------------------------------------------------- the async helpers


async def test_set_list_delete_round_trip(nats_url: str) -> None:
    stripe = await naq.set_limit("stripe", rate="100/s", nats_url=nats_url)
    assert stripe == LimitSpec("stripe", None, Rate(100, 1.0))
    users = await naq.set_limit("user:*", concurrency=1, nats_url=nats_url)
    emails = await naq.set_limit("queue:emails", 2, "10/m", nats_url=nats_url)
    one = await naq.set_limit("user:42", concurrency=4, nats_url=nats_url)
    assert await naq.list_limits(nats_url=nats_url) == [emails, stripe, users, one]
    assert await stored_keys(nats_url) == [
        "fam.user=",
        "one.queue=emails",
        "one.stripe",
        "one.user=42",
    ]

    # redefined: replaced, not added
    faster = await naq.set_limit("stripe", concurrency=5, rate="200/s", nats_url=nats_url)
    assert faster.to_json() == {"name": "stripe", "concurrency": 5, "rate": "200/s"}
    assert (await naq.list_limits(nats_url=nats_url))[1] == faster

    assert await naq.delete_limit("user:*", nats_url=nats_url) is True
    assert await naq.delete_limit("user:*", nats_url=nats_url) is False
    assert await naq.delete_limit("never-defined", nats_url=nats_url) is False
    assert [s.name for s in await naq.list_limits(nats_url=nats_url)] == [
        "queue:emails",
        "stripe",
        "user:42",
    ]


async def test_a_name_with_a_colon_is_readable_by_any_nats_client(nats_url: str) -> None:
    """':' is refused in key-value keys by nats-py's (and the Go client's) key check, so it
    is stored as '='; a plain nats-py client reads the definition back."""
    await naq.set_limit("user:42", concurrency=3, nats_url=nats_url)
    async with raw_nats(nats_url) as nc:
        bucket = await nc.jetstream().key_value("naq_limits")
        entry = await bucket.get("one.user=42")
    assert entry.value is not None
    assert json.loads(entry.value)["concurrency"] == 3


@pytest.mark.parametrize(
    "call",
    [
        *({"name": name, "concurrency": 1} for name in BAD_NAMES),
        *({"name": "stripe", "rate": rate} for rate in BAD_RATES),
        *({"name": "stripe", "concurrency": value} for value in BAD_CONCURRENCY),
        {"name": "stripe"},
        {"name": "user:*", "concurrency": 1, "rate": 5},
    ],
    ids=repr,
)
async def test_bad_input_is_refused_with_nothing_stored(
    nats_url: str, call: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        await naq.set_limit(nats_url=nats_url, **call)
    assert await stored_keys(nats_url) == []
    assert await naq.list_limits(nats_url=nats_url) == []


async def test_delete_refuses_a_bad_name(nats_url: str) -> None:
    for name in ("a b", "*", "user:*x"):
        with pytest.raises(ConfigurationError, match="limit name"):
            await naq.delete_limit(name, nats_url=nats_url)


async def test_an_unreadable_definition_is_skipped(nats_url: str, conn: Connection) -> None:
    await naq.set_limit("stripe", rate="1/s", nats_url=nats_url)
    async with raw_nats(nats_url) as nc:
        bucket = await nc.jetstream().key_value("naq_limits")
        await bucket.put("one.garbage", b"not json")
        await bucket.put("one.no-limit", b"{}")
        await bucket.put("other", b'{"concurrency": 1}')
    assert [s.name for s in await limits.list_limits(conn)] == ["stripe"]
    book = LimitBook(conn)
    await book.start()
    try:
        assert [s.name for s in book.definitions] == ["stripe"]
    finally:
        await book.stop()


# ------------------------------------------------------------- sync twins and SyncClient


@pytest.fixture
def _close_sync_connections() -> Iterator[None]:
    yield
    naq.run_sync(naq.close())


@pytest.mark.usefixtures("_close_sync_connections")
def test_sync_twins_and_sync_client(nats_url: str) -> None:
    spec = naq.set_limit_sync("stripe", 2, "5/s", nats_url=nats_url)
    assert spec == LimitSpec("stripe", 2, Rate(5, 1.0))
    with naq.SyncClient(nats_url=nats_url) as client:
        assert client.set_limit("user:*", concurrency=1) == LimitSpec("user:*", 1)
        assert client.list_limits() == [spec, LimitSpec("user:*", 1)]
        assert naq.list_limits_sync(nats_url=nats_url) == client.list_limits()
        with pytest.raises(ConfigurationError, match="invalid rate '10/d'"):
            client.set_limit("other", rate="10/d")
        assert client.delete_limit("user:*") is True
        assert naq.delete_limit_sync("stripe", nats_url=nats_url) is True
        assert client.delete_limit("stripe") is False
        assert client.list_limits() == []


# ------------------------------------------------------------------------------- the CLI


def test_cli_set_list_delete(nats_url: str) -> None:
    result = naq_cli("limits", "set", "stripe", "--rate", "100/s", "-u", nats_url)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "limit stripe: rate 100/s"
    result = naq_cli("limits", "set", "user:*", "--concurrency", "1", "-u", nats_url)
    assert result.stdout.strip() == "limit user:*: concurrency 1", result.stderr

    listed = naq_cli("limits", "list", "--json", "-u", nats_url)
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"name": "stripe", "concurrency": None, "rate": "100/s"},
        {"name": "user:*", "concurrency": 1, "rate": None},
    ]
    table = naq_cli("limits", "list", "-u", nats_url, env={"COLUMNS": "80"})
    assert table.code == 0, table.stderr
    rows = {line.split()[0]: line.split()[1:] for line in table.stdout.splitlines() if line.strip()}
    assert rows["name"] == ["concurrency", "rate"]
    assert rows["stripe"] == ["-", "100/s"]
    assert rows["user:*"] == ["1", "-"]

    deleted = naq_cli("limits", "delete", "user:*", "-u", nats_url)
    assert (deleted.code, deleted.stdout.strip()) == (0, "deleted limit user:*")
    again = naq_cli("limits", "delete", "user:*", "-u", nats_url)
    assert (again.code, again.error_lines) == (1, ["error: no limit user:* to delete"])
    assert [s.name for s in naq.run_sync(_listed(nats_url))] == ["stripe"]


async def _listed(nats_url: str) -> list[LimitSpec]:
    try:
        return await naq.list_limits(nats_url=nats_url)
    finally:
        await naq.close()


@pytest.mark.parametrize(
    ("args", "wanted"),
    [
        (["set", "stripe", "--rate", "10/d"], "invalid rate '10/d'"),
        (["set", "stripe", "--concurrency", "0"], "concurrency must be a whole number"),
        (["set", "stripe", "--concurrency", "many"], "--concurrency must be a whole number"),
        (["set", "a b", "--concurrency", "1"], "invalid limit name 'a b'"),
        (["set", "stripe"], "needs a concurrency, a rate or both"),
        (["delete", "*"], "a family needs a prefix"),
    ],
)
def test_cli_errors_are_one_line_and_store_nothing(
    nats_url: str, args: list[str], wanted: str
) -> None:
    result = naq_cli("limits", *args, "-u", nats_url)
    assert result.code == 1, result.stdout
    assert len(result.error_lines) == 1, result.stderr
    assert wanted in result.error_lines[0]
    assert "Traceback" not in result.stderr
    assert naq.run_sync(_listed(nats_url)) == []


def test_cli_empty_list(nats_url: str) -> None:
    result = naq_cli("limits", "list", "-u", nats_url)
    assert (result.code, result.stdout.strip()) == (0, "no limits defined")
    assert json.loads(naq_cli("limits", "list", "--json", "-u", nats_url).stdout) == []


# ------------------------------------------------------------------------- the LimitBook


async def _seen_within(book: LimitBook, check: Any) -> float:
    """Seconds until ``check(book)`` holds (at most :data:`WITHIN`)."""
    started = time.monotonic()
    await wait_for(lambda: _true(check(book)), timeout=WITHIN, interval=0.01)
    return time.monotonic() - started


async def _true(value: bool) -> bool:
    return value


async def test_the_book_reads_definitions_then_follows_changes(
    nats_url: str, conn: Connection
) -> None:
    await naq.set_limit("stripe", rate="100/s", nats_url=nats_url)
    await naq.set_limit("user:*", concurrency=1, nats_url=nats_url)
    calls: list[int] = []
    book = LimitBook(conn, on_change=lambda: calls.append(book.version))
    await book.start()
    try:
        # every definition is there once start() returns
        assert [s.name for s in book.definitions] == ["stripe", "user:*"]
        assert book.resolve(["stripe", "user:7", "other"], "default") == [
            ConcreteLimit("stripe", LimitSpec("stripe", None, Rate(100, 1.0))),
            ConcreteLimit("user:7", LimitSpec("user:*", 1)),
        ]
        book.changed.clear()
        version = book.version

        # set elsewhere (another connection): seen within a second
        await naq.set_limit("queue:emails", concurrency=2, nats_url=nats_url)
        await _seen_within(book, lambda b: b.definitions.get("queue:emails") is not None)
        assert book.changed.is_set() and book.version > version and calls[-1] == book.version
        assert book.resolve([], "emails") == [
            ConcreteLimit("queue:emails", LimitSpec("queue:emails", 2))
        ]

        # redefined: the new definition applies
        await naq.set_limit("user:*", concurrency=3, nats_url=nats_url)
        await _seen_within(book, lambda b: b.resolve(["user:7"], "q")[0].spec.concurrency == 3)

        # an exact definition beats its family as soon as it exists
        await naq.set_limit("user:7", rate="1/h", nats_url=nats_url)
        await _seen_within(book, lambda b: b.resolve(["user:7"], "q")[0].spec.name == "user:7")

        # deleted: gone, and the job runs unlimited by it
        await naq.delete_limit("stripe", nats_url=nats_url)
        await _seen_within(book, lambda b: b.resolve(["stripe"], "default") == [])
        assert [s.name for s in book.definitions] == ["queue:emails", "user:*", "user:7"]
    finally:
        await book.stop()

    # stopped: it follows nothing more
    version = book.version
    await naq.set_limit("late", concurrency=1, nats_url=nats_url)
    await asyncio.sleep(0.3)
    assert book.version == version and book.definitions.get("late") is None


async def test_the_book_starts_on_an_empty_bucket_and_watches_again_after_a_reconnect(
    nats_url: str, conn: Connection
) -> None:
    book = LimitBook(conn)
    await book.start()
    try:
        assert len(book.definitions) == 0
        assert book.resolve(["stripe"], "default") == []
        await book._on_reconnect()  # what the connection calls after a reconnect
        await naq.set_limit("stripe", concurrency=1, nats_url=nats_url)
        await _seen_within(book, lambda b: len(b.resolve(["stripe"], "default")) == 1)
        await naq.delete_limit("stripe", nats_url=nats_url)
        await _seen_within(book, lambda b: len(b.definitions) == 0)
    finally:
        await book.stop()
