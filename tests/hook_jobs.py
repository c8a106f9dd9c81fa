"""Job functions of the hook and event tests (run by workers as ``tests.hook_jobs:<name>``)."""

from __future__ import annotations

import asyncio
import os

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


class FileLog:
    """A middleware that appends ``hook job_id`` lines to the file in ``NAQ_TEST_HOOK_LOG``
    (``naq worker --middleware tests.hook_jobs:FileLog``)."""

    def _write(self, line: str) -> None:
        with open(os.environ["NAQ_TEST_HOOK_LOG"], "a", encoding="utf-8") as log:
            log.write(line + "\n")

    def before_job(self, run: naq.JobRun) -> None:
        self._write(f"before_job {run.job_id}")

    def after_job(self, run: naq.JobRun) -> None:
        self._write(f"after_job {run.job_id} {run.outcome}")
