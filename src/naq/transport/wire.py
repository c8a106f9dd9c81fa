"""Synchronous send and dispatch on a nats-py connection, for naq's per-job hot path.

nats-py's public API makes every publish a coroutine (subject validation, header encoding
with a regex per key, a flush hand-off) and routes every received message through an
``asyncio.Queue`` and a task per subscription before the callback runs. That is most of a
worker's per-job cost. This module does the same work the same way nats-py does it, without
the coroutine and queue hops:

* :func:`publish_now` appends the protocol command to the client's outgoing buffer and
  wakes its flusher, exactly as ``Client._send_publish`` does, but synchronously;
* :func:`subscribe_direct` subscribes with a plain function that runs as soon as nats-py has
  parsed the message (inside its read loop), instead of after a queue and a task switch.

Both lean on nats-py internals (``_pending``, ``_flush_queue``, ``Subscription._pending_queue``).
:data:`FAST` is checked once against the installed nats-py; when its internals differ, both
fall back to the public API (slower, same behaviour). See docs/design.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from loguru import logger
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..errors import ConfigurationError, NaqConnectionError
from .names import check_size, is_header_name, is_header_value, is_subject

_CRLF = b"\r\n"
_HEADER_LINE = b"NATS/1.0\r\n"
ACK = b"+ACK"
NAK = b"-NAK"
TERM = b"+TERM"
IN_PROGRESS = b"+WPI"


def _internals_ok() -> bool:
    """True when the installed nats-py has the internals this module relies on."""
    client_attrs = ("_pending", "_pending_data_size", "_flush_queue", "_max_pending_size")
    probe = NatsClient()
    if not all(hasattr(probe, name) for name in client_attrs):
        return False
    return "_pending_queue" in Subscription.__init__.__code__.co_names


#: Whether the synchronous fast path is in use (decided once, for the installed nats-py).
FAST = _internals_ok()
_fallback_sends: set[asyncio.Future[None]] = set()  # publishes started without FAST


def encode_headers(headers: dict[str, str]) -> bytes:
    """A NATS header block (``NATS/1.0`` line, ``Key: value`` lines, blank line).

    Raises :class:`ConfigurationError` for a name nats-py would refuse or a value that could
    end its line (see :mod:`naq.transport.names`)."""
    parts = [_HEADER_LINE]
    for key, value in headers.items():
        if not is_header_name(key):
            raise ConfigurationError(f"invalid NATS header name {key[:80]!r}")
        if not is_header_value(value):
            raise ConfigurationError(f"invalid NATS header value for {key}: {value[:80]!r}")
        parts.append(f"{key}: {value}\r\n".encode())
    parts.append(_CRLF)
    return b"".join(parts)


def publish_now(
    nc: NatsClient,
    subject: str,
    payload: bytes = b"",
    reply: str = "",
    header_block: bytes | None = None,
    *,
    reply_checked: bool = False,
) -> None:
    """Queue a publish on the connection without awaiting (same buffer nats-py uses).

    ``reply_checked``: the reply subject is built by naq from a checked inbox prefix and a
    number (the acked publisher's), so it is not checked again on every message.

    ``header_block`` comes from :func:`encode_headers`. Refuses what nats-py's publish
    refuses, and what would make the server close the connection: a subject or reply
    subject that could break the protocol line (:class:`ConfigurationError`), a message
    over the server's ``max_payload`` (:class:`~naq.errors.PayloadTooLargeError`); a closed
    connection or a full reconnect buffer is a :class:`NaqConnectionError`.
    """
    if not is_subject(subject) or (reply and not reply_checked and not is_subject(reply)):
        raise ConfigurationError(f"invalid NATS subject {subject[:80]!r} / reply {reply[:80]!r}")
    size = len(payload) + (len(header_block) if header_block is not None else 0)
    if size > nc.max_payload:
        check_size(size, nc.max_payload, f"message to {subject[:80]}")
    if not FAST:
        headers = _decode_headers(header_block) if header_block else None
        task = asyncio.ensure_future(nc.publish(subject, payload, reply=reply, headers=headers))
        _fallback_sends.add(task)
        task.add_done_callback(_fallback_sends.discard)
        return
    if nc.is_closed:
        raise NaqConnectionError("the NATS connection is closed")
    size = len(payload)
    if header_block is None:
        cmd = b"".join((f"PUB {subject} {reply} {size}\r\n".encode(), payload, _CRLF))
    else:
        total = size + len(header_block)
        cmd = b"".join(
            (
                f"HPUB {subject} {reply} {len(header_block)} {total}\r\n".encode(),
                header_block,
                payload,
                _CRLF,
            )
        )
    client: Any = nc
    if not nc.is_connected:
        limit = client._max_pending_size
        if limit <= 0 or client._pending_data_size + len(cmd) > limit:
            raise NaqConnectionError("reconnecting to NATS and the outgoing buffer is full")
    client._pending.append(cmd)
    client._pending_data_size += len(cmd)
    client.stats["out_msgs"] += 1
    client.stats["out_bytes"] += size
    flush_queue: asyncio.Queue[asyncio.Future[Any]] | None = client._flush_queue
    if flush_queue is not None and flush_queue.empty() and nc.is_connected:
        flush_queue.put_nowait(asyncio.get_running_loop().create_future())


def reply_to(msg: Any, body: bytes) -> None:
    """Answer a JetStream message (``+ACK``, ``-NAK``, ``+TERM``, ``+WPI``) without awaiting."""
    if not msg.reply:
        raise NaqConnectionError("message has no reply subject to acknowledge")
    publish_now(msg._client, msg.reply, body)


def _decode_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode().split("\r\n")[1:]:
        if line:
            key, _, value = line.partition(": ")
            headers[key] = value
    return headers


class _DirectQueue(asyncio.Queue[Msg]):
    """Stands in for a subscription's pending queue: hands each message straight to
    ``handler`` instead of storing it (so nats-py's own dispatch task just waits)."""

    def __init__(self, sub: Subscription, handler: Callable[[Msg], None]) -> None:
        super().__init__()
        self._sub = sub
        self._handler = handler

    def put_nowait(self, item: Msg) -> None:
        sub: Any = self._sub
        sub._pending_size -= len(item.data)
        try:
            self._handler(item)
        except Exception:  # noqa: BLE001 - one bad message must not stop the read loop
            logger.exception("error handling a message on {}", item.subject)


async def subscribe_direct(
    nc: NatsClient, subject: str, handler: Callable[[Msg], None]
) -> Subscription:
    """Subscribe ``handler`` (a plain function, run on the event loop as soon as a message
    is parsed; it must not block). Errors it raises are logged, never propagated."""
    if not FAST:

        async def callback(msg: Msg) -> None:
            handler(msg)

        return await nc.subscribe(subject, cb=callback)

    async def never_called(msg: Msg) -> None:  # pragma: no cover - the direct queue is used
        handler(msg)

    sub = await nc.subscribe(subject, cb=never_called, pending_bytes_limit=0)
    raw: Any = sub
    raw._pending_queue = _DirectQueue(sub, handler)
    return sub


def nak_body(delay: float | None = None) -> bytes:
    """The ``-NAK`` answer, asking for redelivery after ``delay`` seconds when given."""
    if not delay or delay <= 0:
        return NAK
    return NAK + b' {"delay": %d}' % int(delay * 1_000_000_000)


def delivery_info(reply: str) -> tuple[int, int]:
    """``(stream sequence, times delivered)`` from a JetStream message's ``$JS.ACK`` reply
    subject (both the 9-token form and the 11/12-token form with domain and account)."""
    tokens = reply.split(".")
    if tokens[0] == "$JS" and tokens[1:2] == ["ACK"]:
        if len(tokens) == 9:
            return int(tokens[5]), int(tokens[4])
        if len(tokens) >= 11:
            return int(tokens[7]), int(tokens[6])
    raise ValueError(f"not a JetStream delivery: reply subject {reply!r}")
