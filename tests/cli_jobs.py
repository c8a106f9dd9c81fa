"""Job functions used by the CLI end-to-end tests (tests/test_cli.py).

Workers started by those tests run with ``cwd`` at the repository root, so these functions
are importable as ``tests.cli_jobs:<name>`` and allowed (they live under the working directory).
"""

from __future__ import annotations

import asyncio
import os


def add(a: int, b: int) -> int:
    """A plain (thread-pool) job."""
    return a + b


async def amul(a: int, b: int) -> int:
    """A coroutine job."""
    await asyncio.sleep(0.01)
    return a * b


def worker_pid() -> int:
    """Which process ran the job."""
    return os.getpid()


def log_line(text: str) -> str:
    """A job that logs through loguru, as an application's own job function does."""
    from loguru import logger

    logger.info("job says {}", text)
    return text
