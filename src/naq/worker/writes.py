"""Writes the worker must not lose to a reconnect or a leader election: retried while the
failure may go away by itself, raised at once when it will not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loguru import logger

from ..errors import NaqConnectionError, ServerError

T = TypeVar("T")

#: How long the worker keeps trying to store an outcome while NATS is unreachable, seconds.
STORE_RETRY_FOR = 60.0


def is_transient(exc: BaseException) -> bool:
    """True for failures that may go away by themselves (reconnecting, leader election)."""
    if isinstance(exc, ServerError):
        return exc.code in (0, 503) and not exc.err_code
    return isinstance(exc, NaqConnectionError | OSError | TimeoutError)


async def with_retries(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` until it succeeds or ``STORE_RETRY_FOR`` passes (reconnects, leader
    elections); the lease keeps the message ours meanwhile. Permanent refusals raise at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORE_RETRY_FOR
    delay = 0.1
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not is_transient(exc) or loop.time() + delay > deadline:
                raise
            logger.debug("{} failed ({}); retrying in {:.1f} s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def write_retried(what: str, write: Callable[[], Awaitable[Any]]) -> None:
    """A record write: straight onto the wire (the common case), retried only after a
    failure that may go away by itself."""
    try:
        await write()
    except Exception as exc:
        if not is_transient(exc):
            raise
        await with_retries(what, write)
