"""Job functions of the dashboard API tests (run by workers as ``tests.dashboard_jobs:<name>``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return the call as it came: ``{"args": [...], "kwargs": {...}}``."""
    return {"args": list(args), "kwargs": kwargs}


def needs_flag(flag: str) -> str:
    """Fail unless the file ``flag`` exists."""
    if not Path(flag).exists():
        raise RuntimeError(f"flag file {flag} is missing")
    return "flag found"


def sleep_for(seconds: float) -> float:
    """Sleep, then return how long."""
    time.sleep(seconds)
    return seconds
