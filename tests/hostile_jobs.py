"""Job functions for the hostile-message tests (``tests.hostile_jobs:<name>``).

Each one is harmless: the hostile part of those tests is the message around the call, never
the function itself.
"""

from __future__ import annotations

import threading
from typing import Any


def noop(*args: Any, **kwargs: Any) -> str:
    """Accept any arguments and return ``"ok"``."""
    return "ok"


def echo(value: Any) -> Any:
    """Return ``value`` unchanged."""
    return value


def always_fail(message: str) -> None:
    """Raise ``RuntimeError(message)``."""
    raise RuntimeError(message)


def fail_with_long_message(size: int) -> None:
    """Raise an error whose message is ``size`` characters long."""
    raise RuntimeError("e" * size)


def big_result(size: int) -> str:
    """Return a string of ``size`` characters (to exceed the server's max_payload)."""
    return "x" * size


#: The tokens :func:`canary` was called with, in order (read by the fuzz test of a live
#: in-process worker, which counts the valid jobs that ran).
CANARY_CALLS: list[str] = []
_canary_lock = threading.Lock()


def canary(token: str) -> str:
    """Note that the valid job ``token`` ran, and return ``token``."""
    with _canary_lock:
        CANARY_CALLS.append(token)
    return token
