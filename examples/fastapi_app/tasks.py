"""The job functions of the FastAPI example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import time


def build_report(customer: str, months: int) -> dict[str, object]:
    """A slow report for ``customer`` over the last ``months`` months."""
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    time.sleep(0.2)  # the real work
    return {"customer": customer, "months": months, "total": 100 * months}
