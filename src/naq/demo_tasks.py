"""Jobs used by ``naq demo``: a mix of sync and async functions, registered with ``@task``."""

from __future__ import annotations

import asyncio
import hashlib
import time

from .functions import task


@task
def count_primes(limit: int) -> int:
    """CPU-bound sync job: how many primes are below ``limit``."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(range(n * n, limit, n)))
    return sum(sieve)


@task
def blocking_io(seconds: float) -> str:
    """A sync job that blocks (think: a legacy HTTP client); runs in the worker's threads."""
    time.sleep(seconds)
    return f"slept {seconds:.2f}s in a thread"


@task
async def fetch_page(name: str, seconds: float) -> dict[str, str]:
    """An async job that awaits (think: an aiohttp call); runs on the worker's event loop."""
    await asyncio.sleep(seconds)
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return {"page": name, "etag": digest}
