"""Job functions for the end-to-end reliability tests (tests/test_reliability.py).

Workers started by those tests run with ``cwd`` at the repository root, so these functions are
importable as ``tests.crash_jobs:<name>`` and allowed (they live under the working directory).

Every job appends one line ``<tag> <pid>`` to a run-log file (``O_APPEND``: one ``write`` per
line, so concurrent writers from several threads and processes never interleave) *when it
starts*: a line per run, from which the tests count how many times each job ran and where.
"""

from __future__ import annotations

import os
import time


def _append(log: str, tag: str | int) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def record(
    log: str, tag: str | int, seconds: float = 0.0, done_log: str | None = None
) -> str | int:
    """Log the start, sleep ``seconds`` (a plain, thread-pool job), return ``tag``.

    With ``done_log``, the end of the function's code is logged there the same way."""
    _append(log, tag)
    if seconds:
        time.sleep(seconds)
    if done_log:
        _append(done_log, tag)
    return tag


def crash(log: str, tag: str | int) -> None:
    """Log the start, then kill the whole worker process at once (no cleanup, no outcome)."""
    _append(log, tag)
    os._exit(1)
