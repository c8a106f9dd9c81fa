"""``naq worker`` subprocesses for the tests that kill real processes: started with their
own log files, SIGKILLed and reaped at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import naq

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


def worker_env() -> dict[str, str]:
    """The test's environment without ``NAQ_*`` (URLs are passed explicitly), debug logs on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env["NAQ_LOG_LEVEL"] = "DEBUG"
    return env


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


class WorkerProcesses:
    """Starts ``naq worker`` subprocesses and always reaps them (SIGKILL at teardown)."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._logs: dict[int, Path] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, queues: str | list[str], url: str, *options: str) -> subprocess.Popen[bytes]:
        """A worker on ``queues`` (its output goes to a log file of its own)."""
        if isinstance(queues, str):
            queues = [queues]
        log = self._tmp_path / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "naq", "worker", *queues, *options, "-u", url],
                cwd=ROOT,
                env=worker_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        self._logs[proc.pid] = log
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """What the worker printed so far."""
        return self._logs[proc.pid].read_text(errors="replace")

    def all_logs(self) -> str:
        """The end of every worker's output (for failure messages)."""
        return "\n".join(
            f"--- worker pid {pid}\n{path.read_text(errors='replace')[-6000:]}"
            for pid, path in self._logs.items()
        )

    def wait_listed(self, url: str, *procs: subprocess.Popen[bytes]) -> None:
        """Wait until each worker wrote its first heartbeat (it is consuming)."""

        def listed() -> bool:
            for proc in procs:
                assert proc.poll() is None, f"worker exited early:\n{self.log(proc)}"
            pids = {w.pid for w in naq.list_workers_sync(nats_url=url)}
            return all(proc.pid in pids for proc in procs)

        wait_until(listed, 30, "workers listed", interval=0.05)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL ``proc`` (no cleanup of any kind) and reap it."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        """Kill every worker still running."""
        for proc in self.procs:
            self.kill(proc)
