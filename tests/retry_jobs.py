"""Job functions for ``test_retries.py`` and ``test_dlq.py`` (run by workers as
``tests.retry_jobs:<name>``).

State that must survive between attempts (how often a job ran, when) lives in a file whose
path the test passes in: one line per event.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import naq


def _append(path: str, text: str) -> int:
    """Append one line; returns how many lines the file has now."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return len(Path(path).read_text(encoding="utf-8").splitlines())


def lines(path: str | Path) -> list[str]:
    """The lines written so far (empty if the file does not exist yet)."""
    p = Path(path)
    return p.read_text(encoding="utf-8").splitlines() if p.exists() else []


def always_fail(path: str, message: str) -> None:
    _append(path, "run")
    raise ValueError(message)


def fail_then_succeed(path: str, failures: int, value: Any) -> Any:
    """Raise ValueError on the first ``failures`` runs, then return ``value``."""
    runs = _append(path, "run")
    if runs <= failures:
        raise ValueError(f"failure {runs}")
    return value


def timed_fail(path: str) -> None:
    """Record when this attempt started, then fail."""
    _append(path, repr(time.time()))
    raise ValueError("timed failure")


def raise_named(path: str, kind: str) -> None:
    _append(path, kind)
    if kind == "key":
        raise KeyError("missing key")
    raise ValueError("bad value")


async def sleep_async(path: str, seconds: float) -> str:
    _append(path, "start")
    await asyncio.sleep(seconds)
    _append(path, "end")
    return "slept"


def sleep_sync(path: str, seconds: float) -> str:
    """Record the thread's start and end times around a blocking sleep."""
    _append(path, f"start {time.time()!r}")
    time.sleep(seconds)
    _append(path, f"end {time.time()!r}")
    return "slept"


def mark_start(path: str) -> float:
    now = time.time()
    _append(path, repr(now))
    return now


def echo_kwargs(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


def attempt_number(path: str) -> int:
    """Record ``current_job().attempt``; fail on the first attempt."""
    attempt = naq.current_job().attempt
    _append(path, str(attempt))
    if attempt == 1:
        raise RuntimeError("first attempt fails")
    return attempt


def _wait_flag(flag: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not Path(flag).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"flag {flag} never appeared")
        time.sleep(0.02)


def _exists(path: str) -> bool:
    return Path(path).exists()


def progress_sync(flag: str) -> str:
    """Report progress (repeatedly, as real jobs do) until the file ``flag`` exists."""
    deadline = time.monotonic() + 15.0
    while not _exists(flag):
        naq.current_job().set_progress(0.5, "half")
        if time.monotonic() > deadline:
            raise TimeoutError(f"flag {flag} never appeared")
        time.sleep(0.05)
    return "sync done"


async def progress_async(flag: str) -> str:
    deadline = time.monotonic() + 15.0
    while not _exists(flag):
        naq.current_job().set_progress(0.5, "half")
        if time.monotonic() > deadline:
            raise TimeoutError(f"flag {flag} never appeared")
        await asyncio.sleep(0.05)
    return "async done"


async def progress_once_async(flag: str) -> str:
    """Report progress once, at the start, then wait for the file ``flag``."""
    naq.current_job().set_progress(0.25, "starting")
    deadline = time.monotonic() + 15.0
    while not _exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"flag {flag} never appeared")
        await asyncio.sleep(0.02)
    return "once done"


def needs_flag(flag: str, path: str, value: Any) -> Any:
    """Fail until the file ``flag`` exists; then return ``value``."""
    _append(path, naq.current_job().job_id)
    if not Path(flag).exists():
        raise RuntimeError("flag file is missing")
    return value


def add(a: Any, b: Any) -> Any:
    return a + b


def record_run(path: str, value: Any) -> Any:
    _append(path, "run")
    return value


async def async_add(a: Any, b: Any) -> Any:
    return a + b


async def needs_flag_async(flag: str, path: str, value: Any) -> Any:
    """``needs_flag`` as a coroutine (finishes faster: no thread hop)."""
    _append(path, naq.current_job().job_id)
    if not _exists(flag):
        raise RuntimeError("flag file is missing")
    return value
