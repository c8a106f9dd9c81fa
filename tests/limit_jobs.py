"""Job functions of the limit tests: each appends ``<key> <start> <end> <pid>`` to a log."""

from __future__ import annotations

import os
import time
from pathlib import Path


def timed(log: str, key: str, seconds: float = 0.0) -> str:
    """Sleep ``seconds``, then append ``key start end pid`` to ``log`` (one line per run)."""
    start = time.time()
    if seconds:
        time.sleep(seconds)
    end = time.time()
    with Path(log).open("a") as out:
        out.write(f"{key} {start:.6f} {end:.6f} {os.getpid()}\n")
    return key


def fail_once(flag: str) -> str:
    """Fail the first time (creating ``flag``), succeed the next."""
    marker = Path(flag)
    if not marker.exists():
        marker.write_text("x")
        raise RuntimeError("first time")
    return "second time"


def timed_long_once(log: str, key: str, marker: str, seconds: float) -> str:
    """:func:`timed` sleeping ``seconds`` only on the run that creates ``marker`` (the
    first); a later run of the same job (a redelivery) ends at once."""
    first = not Path(marker).exists()
    Path(marker).touch()
    return timed(log, key, seconds if first else 0.0)


#: One line of a job log: key, start, end, pid.
Run = tuple[str, float, float, int]


def runs(log: Path) -> list[Run]:
    """Every run recorded in ``log`` so far (by :func:`timed` and its kin), in order."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        key, start, end, pid = line.split()
        found.append((key, float(start), float(end), int(pid)))
    return found
