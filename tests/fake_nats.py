"""A fake NATS server on a free port that records every byte a client sends it.

It greets each client with a fixed ``INFO`` line and then only listens (or, with
``answer_pings``, answers ``PING`` with ``PONG`` and nothing else: a server that never replies
to a request). Runs on the test's event loop; use as ``async with FakeNats(info) as fake``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import TracebackType
from typing import Any

#: What a plain (non-TLS) nats-server 2.15 with authentication says first.
AUTH_INFO: dict[str, Any] = {
    "server_id": "x",
    "version": "2.15.1",
    "max_payload": 1048576,
    "headers": True,
    "auth_required": True,
}


class FakeNats:
    """A listening socket speaking just enough NATS to be connected to."""

    def __init__(self, info: dict[str, Any], *, answer_pings: bool = False) -> None:
        self._info = b"INFO " + json.dumps(info).encode() + b"\r\n"
        self._answer_pings = answer_pings
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.received = bytearray()
        self.port = 0

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>``."""
        return f"nats://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeNats:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._clients):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        pending = b""
        try:
            writer.write(self._info)
            await writer.drain()
            while data := await reader.read(65536):
                self.received += data
                if not self._answer_pings:
                    continue
                pending += data
                *lines, pending = pending.split(b"\r\n")
                for line in lines:
                    if line == b"PING":
                        writer.write(b"PONG\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
