"""Helpers shared by the benchmark driver and its child processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: The repository root: child processes run here so ``benchmarks.jobs`` is importable.
ROOT = Path(__file__).resolve().parent.parent


def run_async(coro: Coroutine[Any, Any, T], use_uvloop: bool = False) -> T:
    """Run ``coro`` on a fresh event loop (uvloop's if asked)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def emit(event: str, **data: Any) -> None:
    """Report to the parent process: one JSON object per stdout line."""
    print(json.dumps({"event": event, **data}), flush=True)


def proc_status_mib(field: str, pid: int | str = "self") -> float | None:
    """A memory field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in MiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def child_env(nats_url: str) -> dict[str, str]:
    """Environment for child processes: the server URL, quiet logs, the repo importable."""
    env = dict(os.environ)
    env["NAQ_NATS_URL"] = nats_url
    env["NAQ_LOG_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class Child:
    """A benchmark child process reporting JSON lines on stdout (see :func:`emit`)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Any, argv: list[str]) -> None:
        self.proc = proc
        self._log = log
        self.argv = argv
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, argv: list[str], nats_url: str) -> Child:
        """Start ``argv`` (``python -m ...`` is prepended for module names) in the repo root."""
        cmd = [sys.executable, "-m", *argv] if not argv[0].startswith("/") else argv
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in kill(); stderr of the child
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=ROOT,
            env=child_env(nats_url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        return cls(proc, log, cmd)

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    async def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """Read stdout lines until the event ``name`` arrives."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    await self.proc.wait()
                    raise RuntimeError(
                        f"{' '.join(self.argv[2:4])} exited ({self.proc.returncode}) before "
                        f"'{name}':\n{self.stderr_tail()}"
                    )
                try:
                    data: dict[str, Any] = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.events.append(data)
                if data.get("event") == name:
                    return data

    def stderr_tail(self, chars: int = 3000) -> str:
        """The end of what the child wrote to stderr."""
        self._log.seek(0)
        return str(self._log.read().decode(errors="replace")[-chars:])

    async def stop(self, final_event: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM the child and wait (reading ``final_event`` if given); kill on timeout."""
        result: dict[str, Any] = {}
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        try:
            if final_event is not None:
                result = await self.wait_event(final_event, timeout)
            await asyncio.wait_for(self.proc.wait(), timeout)
        finally:
            await self.kill()
        return result

    async def finish(self, final_event: str, timeout: float) -> dict[str, Any]:
        """Wait for the child to report ``final_event`` and exit by itself."""
        try:
            result = await self.wait_event(final_event, timeout)
            await asyncio.wait_for(self.proc.wait(), timeout)
            return result
        finally:
            await self.kill()

    async def kill(self) -> None:
        """Kill the child if it still runs; release its log."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._log.close()
