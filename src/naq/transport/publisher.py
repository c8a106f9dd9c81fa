"""Pipelined JetStream publishes that wait for their acknowledgement.

nats-py's ``js.publish`` is a full request per call: a fresh random token, a JSON parse and a
dataclass for every PubAck. naq publishes a job record for every job, so it keeps one
wildcard reply subscription per connection (dispatched directly, see :mod:`naq.wire`),
numbers its requests, and only parses an ack when it carries an error. Same guarantee (the
server stored the message), less client CPU.

**Retries.** A message the server deduplicates (a ``Nats-Msg-Id`` header) or refuses when
repeated (create-if-absent: ``Nats-Expected-Last-Subject-Sequence: 0``) is re-sent with the
same headers, so the same id, when its acknowledgement does not come: lost with a stream
leader that died, no responders while a new leader is elected (on a cluster), or the
connection dropped before the ack. It is re-sent until acknowledged (a duplicate's ack
counts: the first copy is stored) or until :attr:`AckedPublisher.retry_within` seconds
passed; then it fails with :class:`~naq.errors.PublishNotConfirmedError`. The happy path
costs nothing more: no extra round trip, one dict entry per message.
A retried create-if-absent write may be refused as a conflict with its own earlier attempt;
its callers (pending records) ignore conflicts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import re
from collections import deque
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .. import constants as c
from ..errors import NaqConnectionError, NaqTimeoutError, PublishNotConfirmedError
from .errors import api_error, no_stream
from .names import check_subject
from .wire import encode_headers, publish_now, subscribe_direct

_NO_RESPONDERS = "503"
_SWEEP_INTERVAL = 0.25
_SEQ = re.compile(rb'"seq"\s*:\s*(\d+)')
#: Header lines that make a message safe to send again (see the module docstring).
_MSG_ID_LINE = f"\r\n{c.HEADER_MSG_ID}: ".encode()
_ABSENT_LINE = f"\r\n{c.HEADER_EXPECTED_LAST_SUBJECT_SEQ}: 0\r\n".encode()
#: Default of :attr:`AckedPublisher.retry_within`: well past a leader election (seconds),
#: well inside the streams' duplicate window.
DEFAULT_RETRY_WITHIN = 30.0
#: How long one attempt of a retried message waits for its ack before it is sent again.
_ATTEMPT_TIMEOUT = 3.0
#: Pause before re-sending after "no responders" (a stream leader is being elected),
#: doubled per attempt up to the last value.
_RESEND_PAUSES = (0.25, 0.5, 1.0)


def is_retryable(header_block: bytes | None) -> bool:
    """True for a message the server stores at most once however often it is sent."""
    return header_block is not None and (
        _MSG_ID_LINE in header_block or _ABSENT_LINE in header_block
    )


@dataclass(slots=True)
class _Resend:
    """What it takes to send a retried message again."""

    subject: str
    payload: bytes
    header_block: bytes
    give_up_at: float
    attempt: int = 0
    #: what went wrong last (named in the final error)
    last: str = "no acknowledgement"
    #: which of the message's entries in the deadline heap is current
    generation: int = 0


def _ack_timeout() -> NaqTimeoutError:
    """No acknowledgement arrived in time (the message may or may not be stored)."""
    return NaqTimeoutError("NATS did not confirm a write in time; it may or may not be stored")


def _not_confirmed(subject: str, seconds: float, last: str) -> PublishNotConfirmedError:
    """A retried message was not acknowledged within ``seconds``."""
    return PublishNotConfirmedError(
        f"NATS did not confirm a write to {subject[:80]} within {seconds:g} s of retries "
        f"with the same message id ({last}); it may not be stored. Sending it again with the "
        f"same id (enqueue again with the same job_id) is safe within the {c.DUPLICATE_WINDOW:g} "
        "s duplicate window: it is stored at most once"
    )


class AckedPublisher:
    """Publishes to JetStream subjects and resolves each call when the server acknowledges."""

    def __init__(self, nc: NatsClient, retry_within: float = DEFAULT_RETRY_WITHIN) -> None:
        self._nc = nc
        #: how long (s) a message that is safe to repeat is re-sent before it fails
        self.retry_within = retry_within
        self._prefix = ""
        self._waiting: dict[str, asyncio.Future[int]] = {}
        # messages safe to repeat, still waiting for their first ack: what sending one
        # again takes (subject, payload, headers, give-up time); made a _Resend only when
        # it is sent again (rare: the hot path keeps a tuple)
        self._retryable: dict[str, tuple[str, bytes, bytes, float]] = {}
        self._resends: dict[str, _Resend] = {}
        self._tokens = itertools.count(1)
        self._started = False
        self._lock = asyncio.Lock()
        # first attempts' deadlines, (deadline, token) in send order, one queue per timeout
        # (so each stays sorted: O(1) per message on the hot path)
        self._firsts: dict[float, deque[tuple[float, str]]] = {}
        # heap of (deadline, token, generation) of messages re-sent or due to be: the
        # moment to act on each (generation: which of its entries is current, >= 1)
        self._deadlines: list[tuple[float, str, int]] = []
        self._sweeper: asyncio.Future[None] | None = None
        #: how many messages were sent again (for tests and reports)
        self.resent = 0

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
        now = loop.time()
        if (
            header_block is not None
            and (_MSG_ID_LINE in header_block or _ABSENT_LINE in header_block)
            and self.retry_within > 0
        ):  # is_retryable(), inlined: this runs once per job
            self._retryable[token] = (subject, payload, header_block, now + self.retry_within)
            timeout = min(timeout, _ATTEMPT_TIMEOUT, self.retry_within)
        self._waiting[token] = future
        firsts = self._firsts.get(timeout)
        if firsts is None:
            firsts = self._firsts[timeout] = deque()
        firsts.append((now + timeout, token))
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())
        try:
            publish_now(
                self._nc, subject, payload, self._prefix + token, header_block, reply_checked=True
            )
        except NaqConnectionError:
            if token not in self._retryable or self._nc.is_closed:
                self._forget(token)
                raise
            # e.g. the reconnect buffer is full: the sweeper sends it again
        except BaseException:
            self._forget(token)
            raise
        return future

    def _forget(self, token: str) -> None:
        self._waiting.pop(token, None)
        self._retryable.pop(token, None)
        self._resends.pop(token, None)

    def _resend_of(self, token: str) -> _Resend | None:
        """The re-send state of ``token`` if it is safe to repeat (made on first need)."""
        resend = self._resends.get(token)
        if resend is None:
            first = self._retryable.pop(token, None)
            if first is not None:
                resend = self._resends[token] = _Resend(*first)
        return resend

    def close(self) -> None:
        """Stop the sweeper and fail whatever still waits (the connection is closing)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        waiting, self._waiting = self._waiting, {}
        self._firsts.clear()
        self._deadlines.clear()
        self._retryable.clear()
        self._resends.clear()
        for future in waiting.values():
            if not future.done():
                future.set_exception(_ack_timeout())
                future.exception()  # retrieved: nobody may be awaiting it any more

    def _clustered(self) -> bool:
        """True when the server is part of a cluster (there, "no responders" on a stream
        subject means its leader is being elected; on a single server, no stream)."""
        info = getattr(self._nc, "_server_info", None) or {}
        return bool(info.get("cluster"))

    async def _sweep(self) -> None:
        """Fail the futures whose acknowledgement is overdue, or send a retried message
        again (one task, not a timer each)."""
        loop = asyncio.get_running_loop()
        deadlines, firsts = self._deadlines, self._firsts
        try:
            while deadlines or any(firsts.values()):
                await asyncio.sleep(_SWEEP_INTERVAL)
                now = loop.time()
                for queue in list(firsts.values()):
                    while queue and queue[0][0] <= now:
                        self._overdue(queue.popleft()[1], 0, now)
                while deadlines and deadlines[0][0] <= now:
                    _, token, generation = heapq.heappop(deadlines)
                    self._overdue(token, generation, now)
        finally:
            self._sweeper = None

    def _overdue(self, token: str, generation: int, now: float) -> None:
        """The deadline of ``token``'s attempt ``generation`` passed: send it again (a
        message safe to repeat), or fail it with a timeout."""
        resend = self._resend_of(token)
        if resend is not None:
            if resend.generation == generation:
                self._again(token, resend, now)
            return
        future = self._waiting.pop(token, None)
        if future is not None and not future.done():
            future.set_exception(_ack_timeout())

    def _again(self, token: str, resend: _Resend, now: float) -> None:
        """Send a retried message again now, or fail it when its time is up."""
        future = self._waiting.get(token)
        if future is None or future.done():
            self._resends.pop(token, None)
            return
        if now >= resend.give_up_at or self._nc.is_closed:
            self._forget(token)
            future.set_exception(_not_confirmed(resend.subject, self.retry_within, resend.last))
            return
        resend.attempt += 1
        resend.generation += 1
        self.resent += 1
        timeout = min(_ATTEMPT_TIMEOUT * resend.attempt, resend.give_up_at - now)
        heapq.heappush(self._deadlines, (now + max(timeout, 0.0), token, resend.generation))
        try:
            publish_now(
                self._nc,
                resend.subject,
                resend.payload,
                self._prefix + token,
                resend.header_block,
                reply_checked=True,
            )
        except NaqConnectionError:
            pass  # reconnecting with a full buffer: the next deadline tries again

    def _later(self, token: str, resend: _Resend) -> None:
        """After "no responders" (no stream leader right now): send again after a pause."""
        loop = asyncio.get_running_loop()
        resend.generation += 1
        resend.last = "no responders: no stream leader"
        pause = _RESEND_PAUSES[min(resend.attempt, len(_RESEND_PAUSES) - 1)]
        heapq.heappush(self._deadlines, (loop.time() + pause, token, resend.generation))
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        headers = msg.headers
        if headers and headers.get("Status") == _NO_RESPONDERS:
            resend = self._resend_of(token) if self._clustered() else None
            if resend is not None:
                self._later(token, resend)  # a leader is being elected: not an answer yet
                return
            future = self._waiting.pop(token, None)
            self._retryable.pop(token, None)
            self._resends.pop(token, None)
            if future is not None and not future.done():
                future.set_exception(no_stream(f"write to {msg.subject}"))
            return
        future = self._waiting.pop(token, None)
        if self._retryable:
            self._retryable.pop(token, None)
        if self._resends:
            self._resends.pop(token, None)
        if future is None or future.done():
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
