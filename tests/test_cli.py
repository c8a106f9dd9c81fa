"""End-to-end tests of the ``naq`` command, run as a real subprocess against a real nats-server.

Every command runs as ``python -m naq ...`` with ``cwd`` at the repository root (so workers may
run ``tests.cli_jobs`` functions), without a terminal unless a test needs one, and with a clean
environment (no inherited ``NAQ_*`` variables).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from tests.cli_run import run_in_terminal

import naq
from naq.info import QueueInfo, WorkerInfo
from naq.server import free_port

ROOT = Path(__file__).resolve().parent.parent
NAQ = [sys.executable, "-m", "naq"]
DEAD_URL = "nats://127.0.0.1:1"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

ADD = "tests.cli_jobs:add"
AMUL = "tests.cli_jobs:amul"
WORKER_PID = "tests.cli_jobs:worker_pid"

WORKER_FIELDS = {
    "state",
    "worker_id",
    "hostname",
    "pid",
    "queues",
    "concurrency",
    "running_jobs",
    "jobs_done",
    "jobs_failed",
    "started_at",
    "last_heartbeat",
    "status",
    "uptime",
    "retrying",
    "limited",
}
QUEUE_FIELDS = {
    "name",
    "waiting",
    "running",
    "retrying",
    "scheduled",
    "deferred",
    "completed",
    "failed",
    "dead",
    "completed_last_minute",
    "failed_last_minute",
    "workers",
    "consumers",
    "paused",
    "waiting_by_priority",
}


# --------------------------------------------------------------------------- helpers


def _env(url: str | None = None, **extra: str) -> dict[str, str]:
    """The parent's environment without any ``NAQ_*`` variable, plus ``url`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    if url is not None:
        env["NAQ_NATS_URL"] = url
    env.update(extra)
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``naq ARGS`` without a terminal and capture its output."""
    return subprocess.run(
        [*NAQ, *args],
        cwd=ROOT,
        env=_env() if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert ``proc`` failed with exit 1 and exactly one line on stderr; return that line."""
    assert proc.returncode == 1, _describe(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, _describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, _describe(proc)
    return lines[0]


def _queue() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def _stored_jobs(url: str, queue: str) -> int:
    """Messages waiting in the jobs stream on ``queue``'s subject (read with plain nats-py)."""

    async def count() -> int:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            subject = f"naq.queue.{queue}"
            info = await nc.jetstream().stream_info("NAQ_JOBS", subjects_filter=subject)
            return int((info.state.subjects or {}).get(subject, 0))
        finally:
            await nc.close()

    return asyncio.run(count())


def _enqueue(url: str, queue: str, n: int) -> list[str]:
    with naq.SyncClient(url) as client:
        return [client.enqueue(ADD, i, 1, queue_name=queue).job_id for i in range(n)]


def _list_workers_json(url: str) -> list[dict[str, Any]]:
    proc = cli("list-workers", "--json", "-u", url)
    assert proc.returncode == 0, _describe(proc)
    data = json.loads(proc.stdout)
    assert isinstance(data, list), data
    return data


def _wait_port(port: int, up: bool, timeout: float = 15.0) -> bool:
    """Wait until 127.0.0.1:port accepts (``up``) or refuses (not ``up``) connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                accepting = True
        except OSError:
            accepting = False
        if accepting == up:
            return True
        time.sleep(0.05)
    return False


def _stop_group(proc: subprocess.Popen[Any]) -> None:
    """Kill the process group of a ``start_new_session`` child we started (cleanup only)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(10)


def _run_in_pty(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal and answer its y/N prompt; colour codes removed."""
    code, text = run_in_terminal(args, env, answer, timeout=60)
    return code, ANSI.sub("", text).replace("\r", "")


@pytest.fixture
def url(nats_url: str) -> str:
    return nats_url


# --------------------------------------------------------------------------- help and errors


def test_help_lists_every_command() -> None:
    proc = cli("--help")
    assert proc.returncode == 0, _describe(proc)
    for command in ("worker", "server", "demo", "purge", "list-workers", "queues", "job"):
        assert re.search(rf"^\W*{re.escape(command)}\s", proc.stdout, re.M), (
            f"{command!r} missing from help:\n{proc.stdout}"
        )


@pytest.mark.parametrize(
    "args",
    [
        ["list-workers"],
        ["queues"],
        ["purge", "q", "--force"],
        ["worker", "q", "--burst"],
        ["job", "x"],
    ],
    ids=lambda a: a[0],
)
def test_no_server_is_one_clear_line(args: list[str]) -> None:
    proc = cli(*args, "-u", DEAD_URL)
    line = _one_error_line(proc)
    assert f"cannot reach NATS at {DEAD_URL}" in line
    assert "naq server" in line


def test_no_server_from_environment_is_one_clear_line() -> None:
    proc = cli("queues", env=_env(DEAD_URL))
    line = _one_error_line(proc)
    assert f"cannot reach NATS at {DEAD_URL}" in line


def test_bad_url_scheme_is_one_clear_line() -> None:
    proc = cli("queues", "-u", "http://x")
    line = _one_error_line(proc)
    assert "scheme" in line
    assert "http://x" in line


def test_invalid_queue_name_is_one_clear_line(url: str) -> None:
    proc = cli("purge", "bad.name", "--force", "-u", url)
    line = _one_error_line(proc)
    assert "bad.name" in line


# --------------------------------------------------------------------------- purge


def test_purge_without_terminal_refuses_and_keeps_jobs(url: str) -> None:
    queue = _queue()
    _enqueue(url, queue, 3)
    assert _stored_jobs(url, queue) == 3

    proc = cli("purge", queue, "-u", url)
    assert proc.returncode != 0, _describe(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    message = proc.stderr.lower()
    assert "refus" in message and "--force" in message, _describe(proc)
    assert "purged" not in proc.stdout
    assert _stored_jobs(url, queue) == 3

    # and the jobs really are still there for a forced purge to count
    forced = cli("purge", queue, "--force", "-u", url)
    assert forced.returncode == 0, _describe(forced)
    assert forced.stdout.strip() == f"purged 3 jobs from {queue}"


def test_purge_force_counts_then_zero(url: str) -> None:
    queue, other = _queue(), _queue()
    _enqueue(url, queue, 4)
    _enqueue(url, other, 2)

    first = cli("purge", queue, "--force", "-u", url)
    assert first.returncode == 0, _describe(first)
    assert first.stdout.strip() == f"purged 4 jobs from {queue}"
    assert _stored_jobs(url, queue) == 0
    assert _stored_jobs(url, other) == 2  # other queues untouched

    second = cli("purge", queue, "-f", "-u", url)
    assert second.returncode == 0, _describe(second)
    assert second.stdout.strip() == f"purged 0 jobs from {queue}"

    both = cli("purge", queue, other, "--force", "-u", url)
    assert both.returncode == 0, _describe(both)
    assert both.stdout.strip().splitlines() == [
        f"purged 0 jobs from {queue}",
        f"purged 2 jobs from {other}",
    ]


def test_purge_prompt_answer_no_keeps_jobs(url: str) -> None:
    queue = _queue()
    _enqueue(url, queue, 2)
    code, out = _run_in_pty([*NAQ, "purge", queue, "-u", url], _env(), "n")
    assert code != 0, out
    assert queue in out  # the question names the queue
    assert "purged" not in out
    assert "Traceback" not in out
    assert _stored_jobs(url, queue) == 2


def test_purge_prompt_answer_yes_purges(url: str) -> None:
    queue = _queue()
    _enqueue(url, queue, 2)
    code, out = _run_in_pty([*NAQ, "purge", queue, "-u", url], _env(), "y")
    assert code == 0, out
    assert f"purged 2 jobs from {queue}" in out
    assert _stored_jobs(url, queue) == 0


# --------------------------------------------------------------------------- worker


def test_burst_worker_runs_sync_and_async_jobs(url: str) -> None:
    queue = _queue()
    with naq.SyncClient(url) as client:
        sync_ids = [client.enqueue(ADD, i, 10, queue_name=queue).job_id for i in range(6)]
        async_ids = [client.enqueue(AMUL, i, 3, queue_name=queue).job_id for i in range(6)]

    proc = cli("worker", queue, "--burst", "-c", "4", "-u", url)
    assert proc.returncode == 0, _describe(proc)
    assert "Traceback" not in proc.stdout + proc.stderr

    with naq.SyncClient(url) as client:
        assert [client.fetch_job_result(j, timeout=5) for j in sync_ids] == [
            i + 10 for i in range(6)
        ]
        assert [client.fetch_job_result(j, timeout=5) for j in async_ids] == [
            i * 3 for i in range(6)
        ]
    assert _stored_jobs(url, queue) == 0

    shown = cli("job", sync_ids[0], "--json", "-u", url)
    assert shown.returncode == 0, _describe(shown)
    info = json.loads(shown.stdout)
    assert info["job_id"] == sync_ids[0]
    assert info["status"] == "completed"
    assert info["function"] == ADD
    assert info["queue_name"] == queue

    table = cli("job", async_ids[0], "-u", url)
    assert table.returncode == 0, _describe(table)
    assert "completed" in table.stdout


def test_job_unknown_id_is_one_clear_line(url: str) -> None:
    missing = f"no-such-job-{uuid.uuid4().hex[:8]}"
    proc = cli("job", missing, "--json", "-u", url)
    line = _one_error_line(proc)
    assert missing in line
    assert proc.stdout == ""


def test_queues_json_shows_waiting_jobs(url: str) -> None:
    queue = _queue()
    # a queue is listed once a worker has created its consumer
    created = cli("worker", queue, "--burst", "-u", url)
    assert created.returncode == 0, _describe(created)
    _enqueue(url, queue, 3)

    proc = cli("queues", "--json", "-u", url)
    assert proc.returncode == 0, _describe(proc)
    data = json.loads(proc.stdout)
    assert isinstance(data, list)
    entries = [q for q in data if q["name"] == queue]
    assert len(entries) == 1, data
    entry = entries[0]
    assert set(entry) == QUEUE_FIELDS == {f.name for f in fields(QueueInfo)}
    assert entry["waiting"] == 3
    assert entry["running"] == 0
    assert entry["workers"] == 0
    assert entry["paused"] is False

    table = cli("queues", "-u", url, env=_env(COLUMNS="200"))
    assert table.returncode == 0, _describe(table)
    assert queue in table.stdout

    assert cli("purge", queue, "--force", "-u", url).stdout.strip() == (
        f"purged 3 jobs from {queue}"
    )


def test_long_running_worker_listed_then_sigterm_exits_cleanly(url: str, tmp_path: Path) -> None:
    queue = _queue()
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as log:
        proc = subprocess.Popen(
            [*NAQ, "worker", queue, "-n", "clitest", "-c", "2", "-u", url],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        entry: dict[str, Any] | None = None
        deadline = time.monotonic() + 30
        while entry is None and time.monotonic() < deadline:
            assert proc.poll() is None, worker_log.read_text()
            entry = next((w for w in _list_workers_json(url) if w["pid"] == proc.pid), None)
            if entry is None:
                time.sleep(0.2)
        assert entry is not None, f"worker never listed; log:\n{worker_log.read_text()}"
        assert set(entry) == WORKER_FIELDS == {f.name for f in fields(WorkerInfo)} | {"state"}
        assert entry["state"] == "idle"
        assert entry["worker_id"].startswith("clitest-")
        assert entry["queues"] == [queue]
        assert entry["concurrency"] == 2
        assert entry["status"] == "running"
        assert entry["hostname"] == socket.gethostname()
        assert entry["running_jobs"] == []
        started = datetime.fromisoformat(entry["started_at"])  # ISO 8601, in UTC
        last_heartbeat = datetime.fromisoformat(entry["last_heartbeat"])
        assert started.utcoffset() == last_heartbeat.utcoffset() == timedelta(0)
        assert started <= last_heartbeat <= datetime.now(UTC) + timedelta(seconds=5)

        # it runs jobs while it is up
        with naq.SyncClient(url) as client:
            job = client.enqueue(WORKER_PID, queue_name=queue)
            assert client.fetch_job_result(job.job_id, timeout=15) == proc.pid

        table = cli("list-workers", "-u", url, env=_env(COLUMNS="250"))
        assert table.returncode == 0, _describe(table)
        assert entry["worker_id"] in table.stdout
        assert str(proc.pid) in table.stdout

        from_env = cli("list-workers", "--json", env=_env(url))
        assert from_env.returncode == 0, _describe(from_env)
        assert proc.pid in [w["pid"] for w in json.loads(from_env.stdout)]

        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        assert code == 0, worker_log.read_text()
        assert "Traceback" not in worker_log.read_text()
        assert proc.pid not in [w["pid"] for w in _list_workers_json(url)]
    finally:
        if proc.poll() is None:
            _stop_group(proc)


def test_list_workers_table_without_workers(url: str) -> None:
    proc = cli("list-workers", "-u", url)
    assert proc.returncode == 0, _describe(proc)
    assert "Traceback" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- server and demo


def _start_server(port: int, store: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*NAQ, "server", "--port", str(port), "--store-dir", str(store)],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if not _wait_port(port, up=True):
        _stop_group(proc)
        pytest.fail(f"naq server never listened on {port}; log:\n{log.read_text()}")
    return proc


def test_server_accepts_jobs_and_sigterm_stops_it(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "store"
    proc = _start_server(port, store, tmp_path / "server.log")
    try:
        server_url = f"nats://127.0.0.1:{port}"
        queue = _queue()
        with naq.SyncClient(server_url) as client:
            job = client.enqueue(ADD, 1, 2, queue_name=queue)
            assert client.get_job_status(job.job_id) == naq.JobStatus.PENDING
        assert _stored_jobs(server_url, queue) == 1
        assert store.is_dir() and any(store.iterdir())

        proc.send_signal(signal.SIGTERM)
        proc.wait(15)  # raises TimeoutExpired if it does not exit
    finally:
        _stop_group(proc)


def test_server_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    proc = _start_server(port, tmp_path / "store", tmp_path / "server.log")
    try:
        proc.send_signal(signal.SIGINT)  # to naq only, not to its process group
        proc.wait(15)
        assert _wait_port(port, up=False), "nats-server still listening after SIGINT"
    finally:
        _stop_group(proc)


def test_server_sigterm_also_stops_nats_server(tmp_path: Path) -> None:
    port = free_port()
    proc = _start_server(port, tmp_path / "store", tmp_path / "server.log")
    try:
        proc.send_signal(signal.SIGTERM)  # to naq only, as `kill PID` or a supervisor does
        proc.wait(15)
        assert _wait_port(port, up=False, timeout=5), "nats-server orphaned after SIGTERM"
        assert proc.returncode == 0
    finally:
        _stop_group(proc)  # kills the orphan too: it stays in naq's process group


def test_demo_against_given_server(url: str) -> None:
    proc = cli("demo", env=_env(url))
    assert proc.returncode == 0, _describe(proc)
    assert "jobs finished" in proc.stdout
    assert url in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_demo_starts_its_own_server() -> None:
    proc = cli("demo", env=_env())
    assert proc.returncode == 0, _describe(proc)
    assert "jobs finished" in proc.stdout
    assert "embedded nats-server" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
