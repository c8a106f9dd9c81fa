"""Pipelined JetStream publishes with per-message acks.

nats-py's ``publish_async`` never resolves its future when the server answers with an
error (``APIError.from_error`` *raises* inside the reply callback), which makes it unusable
for compare-and-set writes, where a refusal is an expected answer. This is the same idea
done here: one wildcard reply subscription, a future per message resolved with the stored
sequence or with the error as an exception object."""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from typing import Any

import nats.js.errors
from nats.aio.msg import Msg

from ..connection import Connection

_NO_RESPONDERS = "503"


class AckPipe:
    """Publishes to JetStream without waiting; each returns a future of the sequence."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.nc: Any = None
        self._prefix = ""
        self._next = 0
        self._futures: dict[str, asyncio.Future[int]] = {}
        self._sub: Any = None

    async def _start(self) -> None:
        nc = self.conn.nc
        if self.nc is nc and self._sub is not None:
            return
        self.nc = nc
        self._prefix = nc.new_inbox()
        self._sub = await nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[int]:
        """Send one message; the future resolves to its stream sequence or raises the
        server's refusal (``nats.js.errors.APIError``) or ``NoStreamResponseError``."""
        await self._start()
        token = str(self._next)
        self._next += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        future.add_done_callback(functools.partial(self._forget, token))
        try:
            await self.nc.publish(
                subject, payload, reply=f"{self._prefix}.{token}", headers=headers
            )
        except BaseException:
            future.cancel()
            raise
        return future

    def _forget(self, token: str, _future: asyncio.Future[int]) -> None:
        self._futures.pop(token, None)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._futures.get(msg.subject.rpartition(".")[2])
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            data = json.loads(msg.data)
        except ValueError as exc:
            future.set_exception(exc)
            return
        error = data.get("error")
        if error:
            future.set_exception(
                nats.js.errors.APIError(
                    code=error.get("code"),
                    err_code=error.get("err_code"),
                    description=error.get("description"),
                )
            )
            return
        future.set_result(int(data.get("seq", 0)))


_pipes: weakref.WeakKeyDictionary[Connection, AckPipe] = weakref.WeakKeyDictionary()


def pipe_for(conn: Connection) -> AckPipe:
    """The pipe of ``conn`` (created on first use)."""
    pipe = _pipes.get(conn)
    if pipe is None:
        pipe = _pipes[conn] = AckPipe(conn)
    return pipe
