"""The job functions of the retries example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import naq

#: Whether the payment service answers; ``main.py`` turns it on before requeueing.
PAYMENT_SERVICE_UP = False


def flaky_fetch(url: str) -> str:
    """Fails on its first two attempts (a flaky network), succeeds on the third."""
    attempt = naq.current_job().attempt
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt}: {url} timed out")
    return f"fetched {url} on attempt {attempt}"


def charge(order_id: int) -> str:
    """Fails while the payment service is down."""
    if not PAYMENT_SERVICE_UP:
        raise RuntimeError("payment service unavailable")
    return f"order {order_id} charged"
