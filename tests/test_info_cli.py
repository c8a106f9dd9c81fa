"""``naq info`` (once, ``--json``, ``--interval`` to a pipe and to a terminal, ended by Ctrl-C)
and ``naq job ID``'s attempts and ``--traceback``, run as subprocesses against a real
nats-server and ``naq worker`` processes."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.cli_run import naq_cli, table_row
from tests.worker_procs import WorkerProcesses

import naq
from naq.cli.attempts_table import NONE_STORED, NOT_KEPT

ROOT = Path(__file__).resolve().parent.parent
FAIL = "tests.jobs:fail"
REFUSED = "os:system"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env.update(extra)
    return env


def _start_info(
    *args: str, env: dict[str, str], stdout: int, stderr: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "naq", "info", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )


def _read_until(fd: int, wanted: bytes, count: int, timeout: float = 30.0) -> bytes:
    """Read ``fd`` until ``wanted`` was seen ``count`` times."""
    seen = b""
    deadline = time.monotonic() + timeout
    while seen.count(wanted) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} not seen {count} times:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty reports EIO once the process closed it
                chunk = b""
            assert chunk, f"output ended early:\n{seen.decode(errors='replace')}"
            seen += chunk
    return seen


def _interrupt(proc: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    """Ctrl-C: SIGINT; then the exit code and what it wrote to stderr (pipes closed)."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    err = proc.stderr.read() if proc.stderr is not None else b""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return code, err


# --------------------------------------------------------------------------- naq info


def test_info_json_snapshot_has_both_listings(nats_url: str, workers: WorkerProcesses) -> None:
    queue = _name("info")
    proc = workers.start(queue, nats_url, "--heartbeat-interval", "0.5")
    workers.wait_listed(nats_url, proc)
    shown = naq_cli("info", "--json", "-u", nats_url, env={"FORCE_COLOR": "1"})
    assert shown.code == 0, shown.stderr
    assert "\x1b[" not in shown.stdout  # never colour, even when forced
    data = json.loads(shown.stdout)
    assert set(data) == {"queues", "workers"}
    (entry,) = [q for q in data["queues"] if q["name"] == queue]
    assert entry["workers"] == 1 and entry["consumers"] == 1
    (worker,) = [w for w in data["workers"] if w["pid"] == proc.pid]
    assert worker["queues"] == [queue]
    assert isinstance(worker["uptime"], float)
    assert worker["started_at"].endswith("+00:00")

    table = naq_cli("info", "-u", nats_url, env={"COLUMNS": "120"})
    assert table.code == 0, table.stderr
    assert queue in table.stdout and worker["worker_id"] in table.stdout, table.stdout
    assert "as of " in table.stdout


def test_info_interval_json_prints_one_line_per_refresh_until_ctrl_c(nats_url: str) -> None:
    proc = _start_info(
        "--interval", "0.2", "--json", "-u", nats_url,
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out = _read_until(proc.stdout.fileno(), b"\n", 3)
    code, err = _interrupt(proc)
    assert code == 0, err
    assert b"Traceback" not in err, err
    lines = [line for line in out.decode().splitlines() if line]
    for line in lines[:3]:
        assert set(json.loads(line)) == {"queues", "workers"}


def test_info_interval_to_a_pipe_prints_each_view_until_ctrl_c(nats_url: str) -> None:
    proc = _start_info(
        "-i", "0.2", "-u", nats_url,
        env=_env(COLUMNS="80"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    out = _read_until(proc.stdout.fileno(), b"Ctrl-C to stop", 2)
    code, err = _interrupt(proc)
    assert code == 0, err
    assert b"Traceback" not in err and b"Error" not in err, err
    assert out.count(b"as of ") >= 2


def test_info_interval_on_a_terminal_refreshes_in_place_until_ctrl_c(
    nats_url: str, workers: WorkerProcesses
) -> None:
    queue = _name("live")
    worker = workers.start(queue, nats_url, "--heartbeat-interval", "0.5")
    workers.wait_listed(nats_url, worker)
    main, child = pty.openpty()
    try:
        proc = _start_info(
            "-i", "0.2", "-u", nats_url,
            env=_env(COLUMNS="100", LINES="40", TERM="xterm"),
            stdout=child, stderr=child,
        )  # fmt: skip
        os.close(child)
        # a live view: later frames move the cursor back up (CSI 1 A) over the earlier ones
        out = _read_until(main, b"Ctrl-C to stop", 3)
        assert b"\x1b[1A" in out, out
        assert queue.encode() in out, out
        assert _interrupt(proc)[0] == 0
        time.sleep(0.2)
        try:
            rest = os.read(main, 65536)
        except OSError:
            rest = b""
        assert b"Traceback" not in out + rest, out + rest
    finally:
        os.close(main)


def test_info_interval_must_be_positive(nats_url: str) -> None:
    for bad in ("0", "-1", "nan"):
        shown = naq_cli("info", "--interval", bad, "-u", nats_url)
        assert shown.code == 1, shown
        assert shown.error_lines == [
            f"error: --interval must be at least 0.1 seconds, got {float(bad)!r}"
        ]


# --------------------------------------------------------------------------- naq job


def test_job_shows_each_attempt_and_on_request_its_traceback(
    nats_url: str, workers: WorkerProcesses
) -> None:
    queue = _name("attempts")
    proc = workers.start(queue, nats_url, "-n", "attempts", "--heartbeat-interval", "0.5")
    workers.wait_listed(nats_url, proc)
    with naq.SyncClient(nats_url) as client:
        job = client.enqueue(FAIL, "boom", max_retries=6, queue_name=queue)
        refused = client.enqueue(REFUSED, "echo no", queue_name=queue)
        deadline = time.monotonic() + 30
        while not all(client.get_job_info(j.job_id).status.is_final for j in (job, refused)):
            assert time.monotonic() < deadline, workers.all_logs()
            time.sleep(0.05)
        info = client.get_job_info(job.job_id)
    assert [a.attempt for a in info.attempts] == [1, 2, 3, 4, 5, 6, 7]
    worker_id = info.attempts[0].worker_id
    assert worker_id is not None

    shown = naq_cli("job", job.job_id, "-u", nats_url, env={"COLUMNS": "80"})
    assert shown.code == 0, shown.stderr
    assert "…" not in shown.stdout and job.job_id in shown.stdout, shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80, shown.stdout
    numbers = [[str(n)] for n in range(1, 8)]
    rows = [line.split() for line in shown.stdout.splitlines() if line.split()[:1] in numbers]
    assert [row[:2] for row in rows] == [[str(n), worker_id] for n in range(1, 8)], shown.stdout
    for row in rows:
        assert row[-2:] == ["builtins:ValueError:", "boom"], shown.stdout
    assert "Traceback" not in shown.stdout
    assert table_row(shown.stdout, "arguments") == "'boom'", shown.stdout

    traced = naq_cli("job", job.job_id, "--traceback", "-u", nats_url, env={"COLUMNS": "80"})
    assert traced.code == 0, traced.stderr
    # the last 5 attempts keep their tracebacks, older ones none
    texts = traced.stdout.split("traceback:")[1:]
    assert len(texts) == 7, traced.stdout
    for text in texts[:2]:
        assert NOT_KEPT in text and "Traceback" not in text
    for text in texts[2:]:
        assert "Traceback (most recent call last)" in text, text
        assert "raise ValueError(message)" in text and "ValueError: boom" in text

    data = json.loads(naq_cli("job", job.job_id, "--json", "-u", nats_url).stdout)
    assert [a["traceback"] is None for a in data["attempts"]] == [True] * 2 + [False] * 5
    assert "ValueError: boom" in data["attempts"][6]["traceback"]
    assert data["attempts"][6]["error_type"] == "builtins:ValueError"

    dead = naq_cli("job", refused.job_id, "--traceback", "-u", nats_url)
    assert dead.code == 0, dead.stderr
    assert "attempt 1 traceback:" in dead.stdout and NONE_STORED in dead.stdout, dead.stdout
