"""The dashboard's cost to the workers: ``naq dashboard`` running, with 20 pages open on the
overview (each a live Server-Sent-Events stream, read to the end of every message), while a
worker drains no-op jobs with events on. Compared, in the same rounds, with the same run
without the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx

from naq.server import free_port

from .common import Child

#: Pages open on the overview during the run.
PAGES = 20


@contextlib.asynccontextmanager
async def open_dashboard(nats_url: str, pages: int = PAGES) -> AsyncIterator[dict[str, int]]:
    """``naq dashboard`` on a free port with ``pages`` live overview streams being read;
    yields counters of what the pages received (messages, bytes)."""
    port = free_port("127.0.0.1")
    child = await Child.start(["naq", "dashboard", "--port", str(port)], nats_url)
    base = f"http://127.0.0.1:{port}"
    received = {"messages": 0, "bytes": 0}
    readers: list[asyncio.Task[None]] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=None)) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/api/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"naq dashboard did not start\n{child.stderr_tail()}")
                await asyncio.sleep(0.1)

            async def read_page() -> None:
                async with http.stream("GET", "/live/overview") as stream:
                    async for chunk in stream.aiter_bytes():
                        received["bytes"] += len(chunk)
                        received["messages"] += chunk.count(b"\n\n")

            readers = [asyncio.create_task(read_page()) for _ in range(pages)]
            await asyncio.sleep(2.5)  # every page has had its first counts
            yield received
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    finally:
        for task in readers:
            task.cancel()
        await child.kill()
