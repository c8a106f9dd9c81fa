"""The job functions of the cancellation example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import asyncio
import time

import naq

#: What the sync job saw, for ``main.py``: the worker runs in its process.
NOTICED: list[str] = []


async def render_video(seconds: float) -> str:
    """A long async job: cancel_job cancels its task."""
    await asyncio.sleep(seconds)
    return "video rendered"


def crunch_numbers(seconds: float) -> str:
    """A long sync job: a thread cannot be killed, so it checks ``cancelled`` and stops."""
    job = naq.current_job()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if job.cancelled:
            NOTICED.append(f"crunch_numbers saw cancelled=True on attempt {job.attempt}")
            return "stopped early"  # discarded: the job stays cancelled
        time.sleep(0.05)
    return "numbers crunched"


def send_newsletter() -> str:
    """A job that is cancelled while it waits, so it never runs."""
    NOTICED.append("send_newsletter ran")
    return "sent"
