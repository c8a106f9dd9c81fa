"""The job the cluster failover tests run (``tests.cluster_jobs:record``): it appends its
number and the time to a file of its worker process, so runs can be counted."""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Where each worker process writes its runs (set by the test for the workers).
RUNS_DIR_VARIABLE = "NAQ_TEST_RUNS_DIR"


def record(number: int) -> int:
    """Append ``number`` and the time to this process's runs file; returns ``number``."""
    path = Path(os.environ[RUNS_DIR_VARIABLE]) / f"{os.getpid()}.runs"
    with path.open("a") as out:
        out.write(f"{number} {time.time():.6f}\n")
    return number


def read_runs(runs_dir: Path) -> list[tuple[int, float]]:
    """Every recorded run in ``runs_dir``: (number, time), in time order."""
    runs = []
    for path in runs_dir.glob("*.runs"):
        for line in path.read_text().splitlines():
            number, at = line.split()
            runs.append((int(number), float(at)))
    return sorted(runs, key=lambda run: run[1])
