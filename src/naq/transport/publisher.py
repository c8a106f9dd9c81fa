"""Pipelined JetStream publishes that wait for their acknowledgement.

nats-py's ``js.publish`` is a full request per call: a fresh random token, a JSON parse and a
dataclass for every PubAck. naq publishes a job record for every job, so it keeps one
wildcard reply subscription per connection (dispatched directly, see :mod:`naq.wire`),
numbers its requests, and only parses an ack when it carries an error. Same guarantee (the
server stored the message), less client CPU.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import deque

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from ..errors import NaqTimeoutError
from .errors import api_error, no_stream
from .names import check_subject
from .wire import encode_headers, publish_now, subscribe_direct

_NO_RESPONDERS = "503"
_SWEEP_INTERVAL = 0.25
_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')


def _ack_timeout() -> NaqTimeoutError:
    """No acknowledgement arrived in time (the message may or may not be stored)."""
    return NaqTimeoutError("NATS did not confirm a write in time; it may or may not be stored")


class AckedPublisher:
    """Publishes to JetStream subjects and resolves each call when the server acknowledges."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._tokens = itertools.count(1)
        self._started = False
        self._lock = asyncio.Lock()
        # (deadline, token) in send order; timeouts are all equal, so this stays sorted
        self._deadlines: deque[tuple[float, str]] = deque()
        self._sweeper: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Subscribe the reply inbox (once)."""
        async with self._lock:
            if self._started:
                return
            self._prefix = check_subject(self._nc.new_inbox()) + "."  # replies: prefix + number
            await subscribe_direct(self._nc, self._prefix + "*", self._on_reply)
            self._started = True

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> int:
        """Publish and wait for the PubAck; returns the stored message's stream sequence
        (for a KV subject: the key's new revision); raises the API error the server sent."""
        return await (await self.send(subject, payload, headers, timeout))

    async def send(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> asyncio.Future[int]:
        """Publish without waiting; the future resolves with the stream sequence (or raises
        the server's refusal, e.g. a failed expected-last-sequence check): pipelining."""
        if not self._started:
            await self.start()
        block = encode_headers(headers) if headers else None
        return self.send_nowait(subject, payload, block, timeout)

    def send_nowait(
        self,
        subject: str,
        payload: bytes,
        header_block: bytes | None = None,
        timeout: float = 10.0,
    ) -> asyncio.Future[int]:
        """:meth:`send` for a started publisher, without a coroutine: ``header_block`` is
        from :func:`naq.wire.encode_headers` (encode once, reuse)."""
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._waiting[token] = future
        self._deadlines.append((loop.time() + timeout, token))
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())
        try:
            publish_now(
                self._nc, subject, payload, self._prefix + token, header_block, reply_checked=True
            )
        except BaseException:
            self._waiting.pop(token, None)
            raise
        return future

    def close(self) -> None:
        """Stop the sweeper and fail whatever still waits (the connection is closing)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        waiting, self._waiting = self._waiting, {}
        self._deadlines.clear()
        for future in waiting.values():
            if not future.done():
                future.set_exception(_ack_timeout())
                future.exception()  # retrieved: nobody may be awaiting it any more

    async def _sweep(self) -> None:
        """Fail the futures whose acknowledgement is overdue (one task, not a timer each)."""
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        try:
            while deadlines:
                await asyncio.sleep(_SWEEP_INTERVAL)
                now = loop.time()
                while deadlines and deadlines[0][0] <= now:
                    _, token = deadlines.popleft()
                    future = self._waiting.pop(token, None)
                    if future is not None and not future.done():
                        future.set_exception(_ack_timeout())
        finally:
            self._sweeper = None

    def _on_reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return
        headers = msg.headers
        if headers and headers.get("Status") == _NO_RESPONDERS:
            future.set_exception(no_stream(f"write to {msg.subject}"))
            return
        data = msg.data
        if b'"error"' in data:
            try:
                error = json.loads(data).get("error")
            except (ValueError, AttributeError):
                error = {"description": data[:200].decode(errors="replace")}
            future.set_exception(api_error(error, "write"))
            return
        future.set_result(_sequence(data))


def _sequence(ack: bytes) -> int:
    """The ``seq`` of a PubAck, without a JSON parse (this runs once per job)."""
    found = _SEQ.search(ack)
    return int(found.group(1)) if found else 0
