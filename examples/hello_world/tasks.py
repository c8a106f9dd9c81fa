"""The job functions of the hello world example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import asyncio


async def greet(name: str) -> str:
    """An async job: a greeting for ``name``."""
    await asyncio.sleep(0.01)
    return f"Hello, {name}!"


def add(a: int, b: int) -> int:
    """A sync job (run in a worker thread): ``a + b``."""
    return a + b
