"""Process measurements for the scheduling benchmark: CPU seconds and RSS of a pid from
``/proc``, percentiles, and child processes (worker, scheduler) run from the repo root."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds used so far by ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mib(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` in MiB (``VmHWM`` = peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """Peak RSS of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class CpuWindow:
    """CPU used by ``pid`` between :meth:`start` and :meth:`stop`, per wall second."""

    pid: int | str
    _cpu: float = 0.0
    _wall: float = 0.0

    def start(self) -> CpuWindow:
        self._cpu, self._wall = cpu_seconds(self.pid), time.monotonic()
        return self

    def stop(self) -> float:
        """Fraction of one core used (1.0 = 100 %)."""
        return (cpu_seconds(self.pid) - self._cpu) / max(1e-9, time.monotonic() - self._wall)


def spawn_naq(args: list[str], nats_url: str, log: Path) -> subprocess.Popen[bytes]:
    """``python -m naq ARGS`` from the repo root, output to ``log``."""
    env = {**os.environ, "NAQ_NATS_URL": nats_url, "NAQ_LOG_LEVEL": "WARNING"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "naq", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (kill after 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
