"""Job functions of the hook and event tests (run by workers as ``tests.hook_jobs:<name>``)."""

from __future__ import annotations

import asyncio

import naq


def ok(value: int) -> int:
    return value * 2


async def async_ok(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


def boom(message: str) -> None:
    raise ValueError(message)


def with_progress() -> str:
    ctx = naq.current_job()
    ctx.set_progress(0.5, "half")
    return "done"


async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def my_headers() -> dict[str, str]:
    return naq.current_job().headers
