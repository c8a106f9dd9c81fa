"""The NATS boundary: the only package that imports nats-py.

Everything above it sees naq types and naq errors: a :class:`Connection` that publishes,
requests and subscribes; key-value reads and writes (:mod:`.kv`); stream reads, counts and
purges (:mod:`.streams`); the synchronous fast path for the worker's acks and pulls
(:mod:`.wire`); the blocking publisher of ``enqueue_sync`` (:mod:`.blocking`). Every name
that reaches a protocol line is checked here (:mod:`.names`), and every message is checked
against the server's ``max_payload`` before it is sent.
"""

from __future__ import annotations

from typing import Protocol

from . import atomic, blocking, kv, streams
from .connect_failures import describe_failure
from .connection import Connection, Subscription
from .credentials import tls_context
from .errors import is_conflict
from .kv import KvChange, KvEntry
from .names import (
    check_subject,
    is_header_name,
    is_header_value,
    is_subject,
    is_token,
    safe_header_value,
)
from .storage import ConsumerSettings
from .streams import ConsumerCounts, StoredMessage
from .wire import (
    ACK,
    FAST,
    IN_PROGRESS,
    NAK,
    TERM,
    delivery_info,
    encode_headers,
    nak_body,
    publish_now,
    reply_to,
)


class Message(Protocol):
    """A message received from NATS, as the layers above the boundary see it."""

    @property
    def subject(self) -> str: ...

    @property
    def reply(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> dict[str, str] | None: ...


__all__ = [
    "ACK",
    "FAST",
    "IN_PROGRESS",
    "NAK",
    "TERM",
    "Connection",
    "ConsumerCounts",
    "ConsumerSettings",
    "KvChange",
    "KvEntry",
    "Message",
    "StoredMessage",
    "Subscription",
    "atomic",
    "blocking",
    "check_subject",
    "delivery_info",
    "describe_failure",
    "encode_headers",
    "is_conflict",
    "is_header_name",
    "is_header_value",
    "is_subject",
    "is_token",
    "kv",
    "nak_body",
    "publish_now",
    "reply_to",
    "safe_header_value",
    "streams",
    "tls_context",
]
