"""Hostile messages against a live worker.

Whoever can publish on ``naq.queue.>`` may send any bytes with any headers, and holds no
signing key. naq promises: every message ends processed or dead-lettered exactly once,
whatever its bytes; nothing forbidden runs; one bad message costs one dead letter, never the
worker's connection.

Messages are published by raw means only: plain nats-py, or :class:`RawNats`, a few lines
speaking the NATS protocol over a TCP socket, for the header bytes nats-py refuses to send.
Every check follows the same accounting (:func:`settle`): a message published to the jobs
stream (known by its stream sequence) must leave the stream, and either have exactly one
dead letter (naq's dead letters carry ``Nats-Msg-Id: dlq-<sequence>-<delivery>``) or a job
record in a final status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import pickle
import random
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from loguru import logger
from tests import hostile_jobs as hj

import naq
from conftest import raw_nats, stream_count
from naq.settings import Settings, load_settings

JOBS_STREAM = "NAQ_JOBS"
DLQ_STREAM = "NAQ_DLQ"
RESULTS_STREAM = "KV_naq_results"
FINAL = frozenset({"completed", "failed", "cancelled", "dead"})
#: How long a hostile message may take to be settled (they take milliseconds when all is well).
SETTLE = 6.0
#: How long the normal job sent after the hostile ones may take.
ALIVE = 8.0
SIGNING_KEY = b"hostile-tests-signing-key"
NOOP = "tests.hostile_jobs:noop"
FAIL = "tests.hostile_jobs:always_fail"


# ============================================================== publishing by raw means


class RawNatsError(Exception):
    """The server answered the raw client with ``-ERR`` (and closed its connection)."""


def header_block(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A NATS header block written byte for byte, whatever the names and values hold."""
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return b"NATS/1.0\r\n" + lines + b"\r\n"


class RawNats:
    """A minimal NATS client on a plain TCP socket: publishes exactly the bytes it is given
    and reads the JetStream acknowledgement."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._inbox = f"_INBOX.hostile.{uuid.uuid4().hex}"
        self._count = 0

    @classmethod
    async def connect(cls, url: str) -> RawNats:
        """Connect, subscribe the reply inbox, and wait for the server's PONG."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=2**20)
        raw = cls(reader, writer)
        await raw._line()  # INFO {...}
        options = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True}
        writer.write(b"CONNECT " + json.dumps(options).encode() + b"\r\n")
        writer.write(f"SUB {raw._inbox}.* 1\r\nPING\r\n".encode())
        await writer.drain()
        while await raw._line() != b"PONG":
            pass
        return raw

    async def close(self) -> None:
        """Close the socket."""
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()

    async def publish(
        self,
        subject: bytes,
        payload: bytes,
        headers: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> dict[str, Any] | None:
        """Publish, and return the JetStream acknowledgement (``None``: no stream answered)."""
        self._count += 1
        reply = f"{self._inbox}.{self._count}".encode()
        if headers is None:
            command = b"PUB %s %s %d\r\n" % (subject, reply, len(payload))
            self._writer.write(command + payload + b"\r\n")
        else:
            block = header_block(headers)
            total = len(block) + len(payload)
            command = b"HPUB %s %s %d %d\r\n" % (subject, reply, len(block), total)
            self._writer.write(command + block + payload + b"\r\n")
        await self._writer.drain()
        return await asyncio.wait_for(self._answer(reply), 10.0)

    async def _line(self) -> bytes:
        line = (await asyncio.wait_for(self._reader.readline(), 10.0)).rstrip(b"\r\n")
        if not line:
            raise RawNatsError("connection closed by the server")
        if line.startswith(b"-ERR"):
            raise RawNatsError(line.decode(errors="replace"))
        if line == b"PING":
            self._writer.write(b"PONG\r\n")
        return line

    async def _answer(self, reply: bytes) -> dict[str, Any] | None:
        while True:
            line = await self._line()
            if line.startswith(b"MSG "):
                parts = line.split()
                data = (await self._reader.readexactly(int(parts[-1]) + 2))[:-2]
                if parts[1] == reply:
                    return json.loads(data) if data else None
            elif line.startswith(b"HMSG "):
                parts = line.split()
                header_len, total = int(parts[-2]), int(parts[-1])
                data = (await self._reader.readexactly(total + 2))[:-2]
                if parts[1] == reply:
                    body = data[header_len:]
                    return json.loads(body) if body else None  # 503: no stream


def stored_seq(ack: dict[str, Any] | None) -> int | None:
    """The stream sequence of a newly stored message, from its acknowledgement."""
    if not ack or "error" in ack or ack.get("duplicate") or ack.get("stream") != JOBS_STREAM:
        return None
    return int(ack["seq"])


async def publish_job(
    nats_url: str, queue: str, payload: bytes, headers: dict[str, str] | None = None
) -> int:
    """Publish ``payload`` on the queue with plain nats-py; its stream sequence."""
    async with raw_nats(nats_url) as nc:
        ack = await nc.jetstream().publish(f"naq.queue.{queue}", payload, headers=headers)
    return int(ack.seq)


async def publish_raw(
    nats_url: str,
    queue: str,
    payload: bytes,
    headers: Sequence[tuple[bytes, bytes]] | None = None,
) -> int:
    """Publish ``payload`` on the queue with :class:`RawNats`; its stream sequence."""
    raw = await RawNats.connect(nats_url)
    try:
        ack = await raw.publish(f"naq.queue.{queue}".encode(), payload, headers)
    finally:
        await raw.close()
    seq = stored_seq(ack)
    assert seq is not None, f"the server did not store the hostile message: {ack}"
    return seq


def envelope(queue: str, fn: str = NOOP, job_id: str | None = None, **fields: Any) -> bytes:
    """A job message written by hand (JSON), with any fields."""
    body = {"id": job_id or f"hostile-{uuid.uuid4().hex}", "fn": fn, "queue": queue, **fields}
    return json.dumps(body).encode()


# ============================================================== watching the worker


class WorkerLog:
    """naq's log records while a test runs (for the diagnosis in failure messages)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def sink(self, message: Any) -> None:
        """Loguru sink: keep one line per record (exceptions by type and text)."""
        record = message.record
        text = f"{record['level'].name} {record['message']}"
        error = record["exception"]
        if error is not None and error.type is not None:
            text += f" [{error.type.__name__}: {error.value}]"
        self.lines.append(text[:400])

    def text(self, limit: int = 25) -> str:
        """The first ``limit`` distinct lines worth reading: errors, warnings other than
        routine dead letters, and failed writes."""
        worth = [
            line
            for line in self.lines
            if line.startswith(("ERROR", "CRITICAL"))
            or (line.startswith("WARNING") and "dead letter on queue" not in line)
            or (line.startswith("DEBUG") and any(w in line for w in ("fail", "error")))
        ]
        distinct = list(
            dict.fromkeys(re.sub(r"[0-9a-f]{8,}|\d+(\.\d+)?", "#", line)[:220] for line in worth)
        )
        more = f"\n  ... and {len(distinct) - limit} more" if len(distinct) > limit else ""
        return "\n  ".join(distinct[:limit]) + more if distinct else "(nothing)"


@pytest.fixture
def worker_log() -> Iterator[WorkerLog]:
    """Collects naq's log records during the test."""
    log = WorkerLog()
    logger.enable("naq")
    sink = logger.add(log.sink, level="DEBUG", filter="naq", format="{message}")
    try:
        yield log
    finally:
        logger.remove(sink)
        logger.disable("naq")


class ConnectionWatch:
    """Records every sign that the worker's NATS connection dropped: ``-ERR`` from the server,
    disconnects, client errors, reconnects."""

    def __init__(self, worker: naq.Worker) -> None:
        conn = worker._conn
        assert conn is not None, "the worker is not connected"
        nc: Any = conn.nc  # nats-py's client; its callbacks are wrapped below
        self.worker = worker
        self.nc = nc
        self.reconnects = int(nc.stats["reconnects"])
        self.events: list[str] = []
        process_err, disconnected, error_cb = (
            nc._process_err,
            nc._disconnected_cb,
            nc._error_cb,
        )

        async def on_err(err_msg: str) -> None:
            self.events.append(f"the server sent -ERR {err_msg}")
            await process_err(err_msg)

        async def on_disconnected() -> None:
            self.events.append("disconnected")
            if disconnected is not None:
                await disconnected()

        async def on_error(error: Exception) -> None:
            self.events.append(f"client error {type(error).__name__}: {error}")
            await error_cb(error)

        nc._process_err, nc._disconnected_cb, nc._error_cb = on_err, on_disconnected, on_error

    def problems(self) -> list[str]:
        """What went wrong with the connection (empty: it never dropped)."""
        found = [e for e in self.events if not e.startswith("client error")]
        conn = self.worker._conn
        if conn is None or conn.nc is not self.nc:
            found.append("the worker's connection object was replaced")
        if self.nc.is_closed:
            found.append("the worker's connection is CLOSED (nats-py will not reconnect)")
        elif not self.nc.is_connected:
            found.append("the worker's connection is not connected")
        reconnects = int(self.nc.stats["reconnects"]) - self.reconnects
        if reconnects:
            found.append(f"the worker reconnected {reconnects} time(s)")
        return found


@dataclass
class Live:
    """A running worker under watch, and a producer for the same queue."""

    worker: naq.Worker
    watch: ConnectionWatch
    log: WorkerLog
    producer: naq.Queue
    queue: str
    nats_url: str

    def diagnosis(self) -> str:
        """Connection events and the worker's log, for failure messages."""
        return (
            f"\nconnection events: {self.watch.events or 'none'}"
            f"\nworker log (warnings, errors):\n  {self.log.text()}"
        )

    async def still_works(self) -> list[str]:
        """Problems with the connection, or with a normal job sent now (it must complete)."""
        problems = self.watch.problems()
        if problems:
            return [f"connection: {p}" for p in problems]
        job = await self.producer.enqueue(hj.echo, "alive")
        try:
            value = await self.producer.fetch_job_result(job.job_id, timeout=ALIVE)
        except Exception as exc:  # noqa: BLE001 - reported with the rest
            return [f"a normal job sent afterwards did not complete: {exc!r}"]
        if value != "alive":
            return [f"a normal job sent afterwards returned {value!r}"]
        return []

    def check(self, problems: list[str]) -> None:
        """Fail with every problem found and the diagnosis."""
        assert not problems, "\n".join(["", *problems]) + self.diagnosis()


@contextlib.asynccontextmanager
async def live_worker(
    running_worker: Any,
    queue: str,
    nats_url: str,
    log: WorkerLog,
    *,
    settings: Settings | None = None,
    concurrency: int = 4,
) -> AsyncIterator[Live]:
    """A worker on ``queue`` that has completed one job (so every stream and bucket exists),
    its connection under watch."""
    base = settings or load_settings(nats_url)
    extra: dict[str, Any] = {"settings": base} if settings is not None else {}
    # a short shutdown: a worker stuck on a hostile message must not hold the test for long
    async with (
        naq.Queue(queue, nats_url=nats_url, settings=base) as producer,
        running_worker(
            [queue], nats_url, concurrency=concurrency, shutdown_timeout=3.0, **extra
        ) as worker,
    ):
        first = await producer.enqueue(hj.echo, "warm-up")
        assert await producer.fetch_job_result(first.job_id, timeout=20.0) == "warm-up"
        yield Live(worker, ConnectionWatch(worker), log, producer, queue, nats_url)


def signed_settings(nats_url: str) -> Settings:
    """Settings with signing on (producer and worker share the key)."""
    return dataclasses.replace(load_settings(nats_url), signing_keys=(SIGNING_KEY,))


# ============================================================== accounting


@dataclass
class Sent:
    """One hostile message stored in the jobs stream."""

    seq: int
    job_id: str | None
    label: str


@dataclass
class Fate:
    """Where a sent message is now."""

    sent: Sent
    in_stream: bool
    dead_letters: list[tuple[str, str]]  # (subject, kind) of each dead letter
    status: str | None

    @property
    def settled(self) -> bool:
        """Out of the stream, and dead-lettered exactly once or processed."""
        if self.in_stream or len(self.dead_letters) > 1:
            return False
        return len(self.dead_letters) == 1 or self.status in FINAL

    def describe(self) -> str:
        """One line for a failure message."""
        return (
            f"{self.sent.label} (seq {self.sent.seq}): "
            f"{'still in the jobs stream' if self.in_stream else 'gone from the jobs stream'}, "
            f"{len(self.dead_letters)} dead letter(s) {self.dead_letters}, "
            f"record status {self.status!r}"
        )


@dataclass
class Ledger:
    """Reads the fate of sent messages from the server."""

    nats_url: str
    dlq_first: int = 1
    sent: list[Sent] = field(default_factory=list)

    @classmethod
    async def open(cls, nats_url: str) -> Ledger:
        """A ledger counting only dead letters stored from now on."""
        async with raw_nats(nats_url) as nc:
            info = await nc.jetstream().stream_info(DLQ_STREAM)
        return cls(nats_url, int(info.state.last_seq) + 1)

    def add(self, seq: int, job_id: str | None, label: str) -> Sent:
        """Account for one more message."""
        sent = Sent(seq, job_id, label)
        self.sent.append(sent)
        return sent

    async def fates(self) -> list[Fate]:
        """The fate of every sent message, now."""
        async with raw_nats(self.nats_url) as nc:
            js = nc.jetstream()
            letters = await self._dead_letters(js)
            found = []
            for sent in self.sent:
                try:
                    await js.get_msg(JOBS_STREAM, seq=sent.seq)
                    in_stream = True
                except nats.js.errors.NotFoundError:
                    in_stream = False
                status = await _record_status(js, sent.job_id)
                found.append(Fate(sent, in_stream, letters.get(sent.seq, []), status))
            return found

    async def _dead_letters(self, js: Any) -> dict[int, list[tuple[str, str]]]:
        """Dead letters by the jobs-stream sequence they name in their ``Nats-Msg-Id``."""
        index: dict[int, list[tuple[str, str]]] = {}
        seq = self.dlq_first
        while True:
            try:
                msg = await js.get_msg(DLQ_STREAM, seq=seq, subject=">", next=True)
            except nats.js.errors.NotFoundError:
                return index
            headers = msg.headers or {}
            parts = str(headers.get("Nats-Msg-Id", "")).split("-")
            if len(parts) == 3 and parts[0] == "dlq" and parts[1].isdigit():
                entry = (str(msg.subject), str(headers.get("Naq-Dlq-Kind", "")))
                index.setdefault(int(parts[1]), []).append(entry)
            seq = int(msg.seq) + 1

    async def settle(self, live: Live | None, timeout: float = SETTLE) -> list[Fate]:
        """Wait until every message is settled (or ``timeout``); their fates."""
        deadline = time.monotonic() + timeout
        while True:
            fates = await self.fates()
            if all(f.settled for f in fates) or time.monotonic() > deadline:
                return fates
            if live is not None and live.watch.nc.is_closed:
                return fates  # nothing more will happen
            await asyncio.sleep(0.2)


async def _record_status(js: Any, job_id: str | None) -> str | None:
    if job_id is None:
        return None
    try:
        msg = await js.get_msg(RESULTS_STREAM, subject=f"$KV.naq_results.{job_id}")
        return str(json.loads(msg.data)["status"]) if msg.data else None
    except Exception:  # noqa: BLE001 - no such record, or an id that is no valid subject
        return None


async def read_record(nats_url: str, job_id: str) -> dict[str, Any] | None:
    """The stored record of ``job_id`` as JSON, or ``None``."""
    async with raw_nats(nats_url) as nc:
        try:
            msg = await nc.jetstream().get_msg(RESULTS_STREAM, subject=f"$KV.naq_results.{job_id}")
        except nats.js.errors.NotFoundError:
            return None
    return json.loads(msg.data) if msg.data else None


def unsettled(fates: list[Fate]) -> list[str]:
    """A problem line for every message not settled."""
    return [f"not settled: {f.describe()}" for f in fates if not f.settled]


def dead_lettered_once(fates: list[Fate]) -> list[str]:
    """A problem line for every message without exactly one dead letter."""
    return [f"expected exactly one dead letter: {f.describe()}" for f in fates if not _one(f)]


def _one(fate: Fate) -> bool:
    return not fate.in_stream and len(fate.dead_letters) == 1


# ============================================================== things that must never run


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """A file that exists only if something forbidden ran."""
    path = tmp_path / "forbidden-code-ran"
    yield path


@dataclass(frozen=True)
class OutsideModule:
    """A module in folders without ``__init__.py``, outside the project but on sys.path; it
    creates the marker when imported and when its ``run`` is called."""

    fn: str


@pytest.fixture
def outside_module(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OutsideModule]:
    top = f"hostile_ns_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "elsewhere" / top / "inner"
    folder.mkdir(parents=True)
    (folder / "evil_mod.py").write_text(
        "from pathlib import Path\n"
        f"MARKER = Path({str(marker)!r})\n"
        "MARKER.write_text('imported')\n\n\n"
        "def run(*args, **kwargs):\n"
        "    MARKER.write_text('ran')\n"
        "    return 'ran'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    try:
        yield OutsideModule(f"{top}.inner.evil_mod:run")
    finally:
        for name in [m for m in sys.modules if m == top or m.startswith(f"{top}.")]:
            del sys.modules[name]


def ran(marker: Path) -> str:
    """What the marker says ran ("" if nothing did)."""
    if not marker.exists():
        return ""
    return f"marker {marker.name} exists ({marker.read_text() or 'touched'})"


class _TouchWhenUnpickled:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def forbidden_calls(marker: Path) -> list[tuple[str, list[Any]]]:
    """Functions no worker may run, with arguments that create ``marker`` if they do."""
    touch = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return [
        ("os:system", [f"touch {marker}"]),
        ("posix:system", [f"touch {marker}"]),
        ("builtins:exec", [touch]),
        ("builtins:eval", [touch]),
        ("subprocess:run", [["touch", str(marker)]]),
    ]


# ============================================================== 1. CR/LF in a job id

#: The job id of the brief: a newline, then a publish on another job's record.
CRLF_ID = "x\r\nPUB $KV.naq_results.victim 5\r\nforge"


async def _bystanders(nats_url: str, queue: str) -> tuple[str, int]:
    """A victim record, a job queued elsewhere and a dead letter elsewhere; the victim's
    revision. The bystander queue has no worker: its job must stay."""
    bystander = f"{queue}-bystander"
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        kv = await js.key_value("naq_results")
        victim = f"victim-{queue}"
        revision = await kv.put(victim, b"original victim record")
        await js.publish(f"naq.queue.{bystander}", b"bystander job")
        await js.publish(f"naq.dlq.{bystander}", b"bystander dead letter")
    return victim, int(revision)


async def _bystander_problems(nats_url: str, queue: str, victim: str, revision: int) -> list[str]:
    problems = []
    bystander = f"{queue}-bystander"
    async with raw_nats(nats_url) as nc:
        kv = await nc.jetstream().key_value("naq_results")
        for key, rev in ((victim, revision), ("victim", None)):
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                if rev is not None:
                    problems.append(f"record {key!r} was deleted")
                continue
            if rev is None or entry.revision != rev:
                problems.append(f"record {key!r} was written: now {entry.value!r}")
    if await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{bystander}") != 1:
        problems.append(f"{JOBS_STREAM} was purged: the job queued on {bystander} is gone")
    if await stream_count(nats_url, DLQ_STREAM, f"naq.dlq.{bystander}") != 1:
        problems.append(f"{DLQ_STREAM} was purged: the dead letter of {bystander} is gone")
    return problems


async def test_crlf_in_job_id_writes_nothing_on_other_subjects(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        victim, revision = await _bystanders(nats_url, queue)
        ledger = await Ledger.open(nats_url)
        seq = await publish_job(nats_url, queue, envelope(queue, job_id=CRLF_ID))
        ledger.add(seq, CRLF_ID, "CR/LF job id")
        fates = await ledger.settle(live)
        problems = dead_lettered_once(fates)
        problems += await _bystander_problems(nats_url, queue, victim, revision)
        problems += await live.still_works()
        live.check(problems)


def _injecting_id(victim: str) -> str:
    """A job id that, written into a publish line, completes that line, publishes on other
    subjects (a forged record, purge requests), and leaves a valid line for what follows."""
    return (
        "a _INBOX.hostile 12 12\r\nNATS/1.0\r\n\r\n\r\n"
        f"PUB $KV.naq_results.{victim} 6\r\nforged\r\n"
        f"PUB $JS.API.STREAM.PURGE.{JOBS_STREAM} _INBOX.hostile 2\r\n{{}}\r\n"
        f"PUB $JS.API.STREAM.PURGE.{DLQ_STREAM} _INBOX.hostile 2\r\n{{}}\r\n"
        "HPUB $KV.naq_results.b"
    )


async def test_crafted_job_id_cannot_smuggle_protocol_commands(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        victim, revision = await _bystanders(nats_url, queue)
        ledger = await Ledger.open(nats_url)
        job_id = _injecting_id(victim)
        seq = await publish_job(nats_url, queue, envelope(queue, job_id=job_id))
        ledger.add(seq, job_id, "job id smuggling PUB commands")
        fates = await ledger.settle(live)
        # the purge (if it happened) removed the dead letters too: check the bystanders first
        problems = await _bystander_problems(nats_url, queue, victim, revision)
        problems += dead_lettered_once(fates)
        problems += await live.still_works()
        live.check(problems)


async def test_rollup_header_cannot_purge_other_queues(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    """The jobs stream honours ``Nats-Rollup``: one message on any queue subject must not
    purge the jobs of other queues (nor the server-side schedules on ``naq.sched.>``)."""
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        victim, revision = await _bystanders(nats_url, queue)
        ledger = await Ledger.open(nats_url)
        try:
            seq: int | None = await publish_job(nats_url, queue, b"rollup", {"Nats-Rollup": "all"})
        except nats.js.errors.Error:  # refused by the jobs stream: the right outcome
            seq = None
        if seq is not None:
            ledger.add(seq, None, "message with Nats-Rollup: all")
        problems = unsettled(await ledger.settle(live))
        problems += await _bystander_problems(nats_url, queue, victim, revision)
        problems += await live.still_works()
        live.check(problems)


async def test_schedule_header_cannot_make_the_server_publish_jobs(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    """The jobs stream honours ``Nats-Schedule``: a message on a queue nobody serves must not
    make the server publish a job on another queue every second."""
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        target = f"{queue}-spawned"
        schedule = {"Nats-Schedule": "@every 1s", "Nats-Schedule-Target": f"naq.queue.{target}"}
        problems = []
        try:
            with contextlib.suppress(nats.js.errors.Error):  # refused: the right outcome
                await publish_job(nats_url, f"{queue}-nobody", envelope(target), schedule)
            await asyncio.sleep(2.5)
            spawned = await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{target}")
            if spawned:
                problems.append(f"a Nats-Schedule header made the server publish {spawned} job(s)")
        finally:
            async with raw_nats(nats_url) as nc:  # stop the schedule for the rest of the module
                await nc.jetstream().purge_stream(JOBS_STREAM, subject=f"naq.queue.{queue}-nobody")
        problems += await live.still_works()
        live.check(problems)


# ============================================================== 2. strange job ids


@pytest.mark.parametrize(
    ("job_id", "fn", "options"),
    [
        pytest.param("j" * 5000, NOOP, {}, id="5000-chars"),
        pytest.param("has space", NOOP, {}, id="space"),
        pytest.param("jöb-ünïcode", FAIL, {"max_retries": 2}, id="non-ascii-failing-retried"),
    ],
)
async def test_strange_job_id_is_settled_and_the_connection_kept(
    nats_url: str,
    queue: str,
    running_worker: Any,
    worker_log: WorkerLog,
    job_id: str,
    fn: str,
    options: dict[str, Any],
) -> None:
    job_id = f"{job_id}-{uuid.uuid4().hex[:6]}"
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        payload = envelope(queue, fn, job_id, args=["boom"], retry_delay=0, **options)
        ledger.add(await publish_job(nats_url, queue, payload), job_id, f"job id {job_id[:20]!r}")
        problems = unsettled(await ledger.settle(live))
        problems += await live.still_works()
        live.check(problems)


# ============================================================== 3. odd shapes and headers


async def test_json_nested_1000_deep_in_args_is_dead_lettered(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    job_id = f"deep-{uuid.uuid4().hex}"
    nested = "[" * 1000 + "]" * 1000  # built as text: json.dumps would hit the recursion limit
    payload = f'{{"id": "{job_id}", "fn": "{NOOP}", "queue": "{queue}", "args": [{nested}]}}'
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        ledger.add(await publish_job(nats_url, queue, payload.encode()), job_id, "nested args")
        problems = unsettled(await ledger.settle(live))
        problems += await live.still_works()
        live.check(problems)


async def test_header_name_nats_py_refuses_is_settled(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog, marker: Path
) -> None:
    odd = [(b"X@Y", b"1")]
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        good_id = f"good-{uuid.uuid4().hex}"
        seq = await publish_raw(nats_url, queue, envelope(queue, job_id=good_id), odd)
        ledger.add(seq, good_id, "valid job with header X@Y")
        bad_id = f"refused-{uuid.uuid4().hex}"
        payload = envelope(queue, "os:system", bad_id, args=[f"touch {marker}"])
        ledger.add(await publish_raw(nats_url, queue, payload, odd), bad_id, "os:system + X@Y")
        garbage_seq = await publish_raw(nats_url, queue, b"\x00 not a job \xff", odd)
        ledger.add(garbage_seq, None, "garbage + X@Y")
        problems = unsettled(await ledger.settle(live))
        if ran(marker):
            problems.append(f"os:system ran: {ran(marker)}")
        problems += await live.still_works()
        live.check(problems)


async def test_non_ascii_signature_header_is_dead_lettered(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    settings = signed_settings(nats_url)
    async with live_worker(running_worker, queue, nats_url, worker_log, settings=settings) as live:
        ledger = await Ledger.open(nats_url)
        for value in ("é".encode(), b"\xff\xfe", "ü".encode() * 32):
            job_id = f"sig-{uuid.uuid4().hex}"
            headers = [(b"Naq-Signature", value)]
            seq = await publish_raw(nats_url, queue, envelope(queue, job_id=job_id), headers)
            ledger.add(seq, job_id, f"Naq-Signature: {value!r}")
        problems = dead_lettered_once(await ledger.settle(live))
        problems += await live.still_works()
        live.check(problems)


async def test_negative_result_ttl_is_settled_and_the_next_job_runs_promptly(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        job_id = f"ttl-{uuid.uuid4().hex}"
        payload = envelope(queue, job_id=job_id, result_ttl=-1)
        ledger.add(await publish_job(nats_url, queue, payload), job_id, "result_ttl -1")
        started = time.monotonic()
        problems = await live.still_works()
        took = time.monotonic() - started
        if not problems and took > 2.0:
            problems.append(f"the normal job after it took {took:.1f} s")
        problems += unsettled(await ledger.settle(live))
        live.check(problems)


async def test_failed_job_naming_another_queue_is_dead_lettered_on_its_own_queue(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        job_id = f"other-queue-{uuid.uuid4().hex}"
        payload = envelope(queue, FAIL, job_id, args=["boom"], max_retries=0)
        payload = payload.replace(f'"queue": "{queue}"'.encode(), b'"queue": "a b"')
        ledger.add(await publish_job(nats_url, queue, payload), job_id, 'envelope queue "a b"')
        fates = await ledger.settle(live)
        problems = dead_lettered_once(fates)
        for fate in fates:
            subjects = [subject for subject, _ in fate.dead_letters]
            if subjects and subjects != [f"naq.dlq.{queue}"]:
                problems.append(f"dead-lettered on {subjects}, not on naq.dlq.{queue}")
        problems += await live.still_works()
        live.check(problems)


async def test_function_in_folders_without_init_outside_the_project_is_refused(
    nats_url: str,
    queue: str,
    running_worker: Any,
    worker_log: WorkerLog,
    outside_module: OutsideModule,
    marker: Path,
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        job_id = f"outside-{uuid.uuid4().hex}"
        payload = envelope(queue, outside_module.fn, job_id)
        ledger.add(await publish_job(nats_url, queue, payload), job_id, outside_module.fn)
        fates = await ledger.settle(live)
        problems = dead_lettered_once(fates)
        if ran(marker):
            problems.append(f"the module outside the project was {ran(marker)}")
        problems += await live.still_works()
        live.check(problems)


async def test_naq_internals_reached_through_the_src_folder_are_refused(
    nats_url: str,
    queue: str,
    running_worker: Any,
    worker_log: WorkerLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``src/`` has no ``__init__.py`` and lies under the worker's directory (a src-layout
    project), so ``src.naq.<module>`` names naq's own code under another name."""
    if not (Path.cwd() / "src" / "naq" / "functions.py").is_file():
        pytest.skip("run from the project root (src/naq under the current directory)")
    monkeypatch.setattr(sys, "path", list(sys.path))  # whatever a job adds goes away after
    injected = str(tmp_path / "injected-by-a-job")
    try:
        async with live_worker(running_worker, queue, nats_url, worker_log) as live:
            ledger = await Ledger.open(nats_url)
            job_id = f"src-naq-{uuid.uuid4().hex}"
            fn = "src.naq.functions:add_module_paths"
            payload = envelope(queue, fn, job_id, args=[[injected]])
            ledger.add(await publish_job(nats_url, queue, payload), job_id, fn)
            fates = await ledger.settle(live)
            problems = dead_lettered_once(fates)
            kinds = [kind for fate in fates for _, kind in fate.dead_letters]
            if kinds and kinds != ["refused"]:
                problems.append(f"dead letter kind {kinds}, expected ['refused']")
            if injected in sys.path:
                problems.append(f"naq's add_module_paths ran as a job: {injected} is on sys.path")
            problems += await live.still_works()
            live.check(problems)
    finally:
        for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
            del sys.modules[name]


# ============================================================== 4. forgeries with signing on


async def test_unsigned_copy_of_a_signed_job_does_not_touch_its_record(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    settings = signed_settings(nats_url)
    async with live_worker(running_worker, queue, nats_url, worker_log, settings=settings) as live:
        job_id = f"signed-{uuid.uuid4().hex}"
        await live.producer.enqueue(hj.echo, "real", job_id=job_id)
        assert await live.producer.fetch_job_result(job_id, timeout=ALIVE) == "real"
        ledger = await Ledger.open(nats_url)
        forged = envelope(queue, "tests.hostile_jobs:echo", job_id, args=["forged"])
        ledger.add(await publish_job(nats_url, queue, forged), None, "unsigned copy")
        problems = dead_lettered_once(await ledger.settle(live))
        record = await read_record(nats_url, job_id) or {}
        if (record.get("status"), record.get("result")) != ("completed", "real"):
            problems.append(
                f"the signed job's record was changed by the unsigned copy: status "
                f"{record.get('status')!r}, error {record.get('error')!r}"
            )
        problems += await live.still_works()
        live.check(problems)


async def test_unsigned_message_with_a_future_jobs_msg_id_does_not_stop_it(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    settings = signed_settings(nats_url)
    async with live_worker(running_worker, queue, nats_url, worker_log, settings=settings) as live:
        job_id = f"future-{uuid.uuid4().hex}"
        ledger = await Ledger.open(nats_url)
        seq = await publish_job(nats_url, queue, b"unsigned decoy", {"Nats-Msg-Id": job_id})
        ledger.add(seq, None, "decoy carrying the future job's Nats-Msg-Id")
        problems = dead_lettered_once(await ledger.settle(live))
        await live.producer.enqueue(hj.echo, "real", job_id=job_id)
        try:
            value = await live.producer.fetch_job_result(job_id, timeout=ALIVE)
            if value != "real":
                problems.append(f"the signed job returned {value!r}")
        except Exception as exc:  # noqa: BLE001 - reported with the rest
            record = await read_record(nats_url, job_id) or {}
            stored = await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}")
            problems.append(
                f"the signed job never ran ({exc!r}); its record is {record.get('status')!r}, "
                f"{stored} message(s) in the queue"
            )
        problems += await live.still_works()
        live.check(problems)


# ============================================================== 5. zombies


async def test_result_larger_than_max_payload_fails_the_job_and_keeps_the_connection(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        job = await live.producer.enqueue(hj.big_result, 2_000_000)
        problems = []
        try:
            await live.producer.fetch_job_result(job.job_id, timeout=SETTLE)
            problems.append("fetching the 2 MB result succeeded")
        except naq.JobExecutionError as exc:
            if not any(w in str(exc).lower() for w in ("payload", "large", "size", "bytes")):
                problems.append(f"unclear error for the oversized result: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported with the rest
            problems.append(f"the job did not end failed: {exc!r}")
        record = await read_record(nats_url, job.job_id) or {}
        if record.get("status") != "failed":
            problems.append(f"the job's record is {record.get('status')!r}, expected 'failed'")
        problems += await live.still_works()
        live.check(problems)


async def test_endless_retries_with_long_errors_keep_the_connection(
    nats_url: str, queue: str, running_worker: Any, worker_log: WorkerLog
) -> None:
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        await live.producer.enqueue(
            hj.fail_with_long_message, 200_000, max_retries=10**9, retry_delay=0
        )
        for _ in range(25):  # let it retry for 2.5 s
            if live.watch.problems():
                break
            await asyncio.sleep(0.1)
        live.check(await live.still_works())


# ============================================================== 6. absurd retry delays


@pytest.mark.parametrize("delay", [float("inf"), 1e300], ids=["inf", "1e300"])
async def test_absurd_retry_delay_is_refused_at_enqueue(
    nats_url: str, queue: str, delay: float
) -> None:
    job_id = f"delay-{uuid.uuid4().hex}"
    problems = []
    try:
        await naq.enqueue(
            hj.noop, queue_name=queue, nats_url=nats_url, retry_delay=delay, job_id=job_id
        )
        problems.append(f"naq.enqueue accepted retry_delay={delay!r}")
    except naq.ConfigurationError as exc:
        if "retry_delay" not in str(exc):
            problems.append(f"the error does not name retry_delay: {exc}")
    if await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}"):
        problems.append("a job message was stored")
    if await read_record(nats_url, job_id) is not None:
        problems.append("a job record was stored")
    assert not problems, problems


# ============================================================== 7. property: any message

#: Hostile values; the ``_SAFE_`` ones keep a job that runs from retrying for long.
_SPECIAL = ["NaN", "Infinity", "-Infinity", "1e400"]  # written as bare JSON literals
_NUMBERS: st.SearchStrategy[Any] = st.sampled_from(
    [0, 1, -1, 1.5, -(10**20), 10**20, 2**64, 1e300, -1e300, True, None, "x", [], {}, *_SPECIAL]
)
_SAFE_RETRIES: st.SearchStrategy[Any] = st.sampled_from(
    [0, 1, 2, -1, -(10**20), 1.5, "2", None, True, [], {}]
)
_SAFE_DELAYS: st.SearchStrategy[Any] = st.sampled_from(
    [0, 0.0, [0], [], -1, [-1], 1e300, "x", None, *_SPECIAL]
)
_TIMEOUTS: st.SearchStrategy[Any] = st.sampled_from(
    [None, 5, 0, -1, 1e-300, 1e300, "NaN", "Infinity", "x", []]
)
_STRANGE_IDS = st.sampled_from(
    [
        "z" * 300,
        "",
        " ",
        "a b",
        "x\r\ny",
        "*",
        ">",
        "a.b",
        "..",
        "ü",
        "\x00",
        "$KV.x",
        "a\tb",
        "PUB x 1\r\n",
        "../../etc",
    ]
)
_RUNNABLE = st.sampled_from(["tests.hostile_jobs:noop", "tests.hostile_jobs:echo"])
_UNRUNNABLE = st.sampled_from(
    [
        "nonexistent.module:f",
        "not a path",
        "",
        "tests.hostile_jobs",
        "tests:hostile_jobs",
        "tests.hostile_jobs:noop.__call__",
        "tests.hostile_jobs:noop.__globals__",
        "naq.worker.core:Worker",
        "naq:enqueue",
        "__main__:main",
        "sys:exit",
        "os.path:join",
        "importlib:import_module",
        "pickle:loads",
        "tests.hostile_jobs:Any",
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_HEADER_NAMES = st.sampled_from(
    b"X@Y|Naq-Signature|naq-signature|\xff\xfe|K\x00|a(b)|{}|Content-Type|-|X-\xc3\xa9|"
    b"Naq-Orig-Nats-Msg-Id|\x7f".split(b"|")
) | st.binary(min_size=1, max_size=12).filter(
    lambda b: not any(c in b for c in b"\r\n: \t") and not b.lower().startswith(b"nats-")
)
_HEADER_VALUES = (
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
    | st.sampled_from([b"", b" ", "é".encode(), b"\xff", b"\x00", b"a\x00b", b"   x   "])
    | st.integers(1_000, 60_000).map(lambda n: b"v" * n)
)


@dataclass
class Hostile:
    """One generated message: a JSON body (or raw bytes) and headers."""

    body: dict[str, Any] | None
    raw: bytes
    headers: list[tuple[bytes, bytes]] | None
    label: str

    @property
    def job_id(self) -> str | None:
        """The id the message claims, when it is a string."""
        claimed = self.body.get("id") if self.body is not None else None
        return claimed if isinstance(claimed, str) else None

    @property
    def payload(self) -> bytes:
        """The bytes published."""
        return _json_text(self.body) if self.body is not None else self.raw


def _json_text(value: dict[str, Any]) -> bytes:
    """JSON with the special numbers written as bare literals (NaN, Infinity, 1e400)."""
    text = json.dumps(value)
    for literal in ("NaN", "-Infinity", "Infinity", "1e400"):
        text = text.replace(f'"{literal}"', literal)
    return text.encode()


def _hostile_fields(queue: str, marker: Path, runs: bool) -> dict[str, st.SearchStrategy[Any]]:
    """For each envelope field, hostile values (bounded retries when the function runs)."""
    retries, delays, timeouts = (
        (_SAFE_RETRIES, _SAFE_DELAYS, _TIMEOUTS)
        if runs
        else (_NUMBERS, _NUMBERS | st.lists(_NUMBERS, max_size=3), _NUMBERS)
    )
    pickled = base64.b64encode(pickle.dumps(_TouchWhenUnpickled(marker))).decode()
    return {
        "id": _STRANGE_IDS | st.sampled_from([12, None, ["x"], {"a": 1}]),
        "fn": st.sampled_from([7, None, ["os:system"], "a:b:c", ":", "os:system\r\n"]),
        "queue": st.sampled_from(["a b", "", "x\r\ny", f"{queue}-other", 5, "ü", "*", None]),
        "args": st.sampled_from(["args", {"0": 1}, None, [{"__naq__": "bytes", "v": "!!"}]])
        | st.lists(_JSON, max_size=4),
        "kwargs": st.dictionaries(st.text(max_size=6), _JSON, max_size=3)
        | st.sampled_from([[], "x", {"__naq__": "bytes", "v": "!!"}, {"": 1}]),
        "max_retries": retries,
        "retry_delay": delays,
        "timeout": timeouts,
        "v": st.sampled_from([2, 0, -1, "1", None, 10**30]),
        "retry_strategy": st.sampled_from(["exponential", "bogus", 3, None]),
        "retry_on": st.sampled_from([["builtins:TypeError"], "x", [1], ["a b"], None]),
        "ignore_on": st.sampled_from([["builtins:Exception"], None, [[]], "x"]),
        "result_ttl": st.sampled_from([0, -1, 1, 10**12, 2**70, 1.5, "x", "1e400", "NaN"]),
        "depends_on": st.sampled_from([["a b"], ["x\r\ny"], "x", [None], ["z" * 5000]]),
        "enqueued_at": _NUMBERS,
        "schedule_id": st.sampled_from(["s", "s\r\nt", 3, "a b"]),
        "pickled": st.sampled_from([pickled, "not base64 !!", "", 1]),
        "unknown_field": _JSON,
        "__naq__": st.just("bytes"),
    }


@st.composite
def hostile_envelope(draw: st.DrawFn, queue: str, marker: str) -> tuple[dict[str, Any], str]:
    """A valid job envelope with up to four fields made hostile (so that most messages
    decode and reach the deeper paths); the label says what."""
    kind = draw(st.sampled_from(["forbidden", "unrunnable", "runnable"]))
    if kind == "forbidden":
        fn, args = draw(st.sampled_from(forbidden_calls(Path(marker))))
    else:
        fn = draw(_UNRUNNABLE) if kind == "unrunnable" else draw(_RUNNABLE)
        args = draw(st.lists(_JSON, max_size=3))
    body: dict[str, Any] = {"id": "plain", "fn": fn, "queue": queue, "args": args}
    hostile = _hostile_fields(queue, Path(marker), runs=kind == "runnable")
    names = draw(st.lists(st.sampled_from(sorted(hostile)), max_size=4, unique=True))
    for name in names:
        body[name] = draw(hostile[name])
    changed = ", ".join(f"{n}={str(body[n])[:24]!r}" for n in names) or "nothing else"
    return body, f"{kind} {fn}: {changed}"


@st.composite
def hostile_message(draw: st.DrawFn, queue: str, marker: str) -> Hostile:
    """Any message: a hostile envelope (sometimes padded to hundreds of KB), random bytes,
    or a large blob; with hostile headers or none."""
    shape = draw(st.sampled_from(["envelope"] * 6 + ["bytes", "big-bytes", "big-envelope"]))
    body: dict[str, Any] | None = None
    raw = b""
    if shape == "bytes":
        raw, label = draw(st.binary(max_size=200)), "random bytes"
    elif shape == "big-bytes":
        size, seed = draw(st.integers(100_000, 900_000)), draw(st.integers(0, 2**32))
        raw, label = random.Random(seed).randbytes(size), f"{size} random bytes"
    else:
        body, label = draw(hostile_envelope(queue, marker))
        if shape == "big-envelope":
            size = draw(st.integers(100_000, 900_000))
            body["padding"] = "p" * size
            label = f"{label} padded by {size}"
    headers = draw(
        st.none() | st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), min_size=1, max_size=4)
    )
    return Hostile(body, raw, headers, f"{label}, headers={_short(headers)}")


def _short(headers: list[tuple[bytes, bytes]] | None) -> str:
    if headers is None:
        return "none"
    return ", ".join(f"{n[:12]!r}:{len(v)}B" for n, v in headers)


def generate_messages(queue: str, marker: Path, count: int) -> list[Hostile]:
    """``count`` distinct hostile messages, the same ones on every run (derandomized)."""
    found: list[Hostile] = []

    @hypothesis_settings(
        max_examples=count * 2,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_message(queue, str(marker)))
    def collect(message: Hostile) -> None:
        found.append(message)

    collect()
    distinct: dict[tuple[bytes, tuple[tuple[bytes, bytes], ...]], Hostile] = {}
    for message in found:
        distinct.setdefault((message.payload, tuple(message.headers or ())), message)
    return list(distinct.values())[:count]


def _unique_ids(messages: list[Hostile]) -> None:
    """Make each claimed id unique (the strangeness kept), so records can be told apart."""
    for number, message in enumerate(messages):
        if message.body is not None and message.job_id is not None:
            message.body["id"] = f"{message.job_id}-h{number}"


async def _publish_all(nats_url: str, queue: str, messages: list[Hostile], ledger: Ledger) -> int:
    """Publish every message raw; how many the server refused to store (not accounted)."""
    refused = 0
    raw = await RawNats.connect(nats_url)
    try:
        for number, message in enumerate(messages):
            try:
                ack = await raw.publish(
                    f"naq.queue.{queue}".encode(), message.payload, message.headers
                )
            except (RawNatsError, TimeoutError, OSError, asyncio.IncompleteReadError):
                ack = None
                await raw.close()
                raw = await RawNats.connect(nats_url)
            seq = stored_seq(ack)
            if seq is None:
                refused += 1
                continue
            ledger.add(seq, message.job_id, f"#{number} {message.label}")
    finally:
        await raw.close()
    return refused


async def test_any_hostile_message_is_settled_once_and_nothing_forbidden_runs(
    nats_url: str,
    queue: str,
    running_worker: Any,
    worker_log: WorkerLog,
    marker: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = generate_messages(queue, marker, 150)
    _unique_ids(messages)
    monkeypatch.setattr(sys, "path", list(sys.path))
    async with live_worker(running_worker, queue, nats_url, worker_log) as live:
        ledger = await Ledger.open(nats_url)
        refused = await _publish_all(nats_url, queue, messages, ledger)
        assert len(ledger.sent) >= 100, f"the server stored only {len(ledger.sent)} messages"
        fates = await ledger.settle(live, timeout=25.0)
        problems = unsettled(fates)
        if len(problems) > 40:
            problems = [*problems[:40], f"... and {len(problems) - 40} more not settled"]
        if ran(marker):
            problems.append(f"forbidden code ran: {ran(marker)}")
        problems += await live.still_works()
        settled = sum(f.settled for f in fates)
        summary = f"{settled}/{len(fates)} settled ({refused} refused at publish)"
        live.check([summary, *problems] if problems else [])
