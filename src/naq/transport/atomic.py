"""All-or-nothing publishing: one JetStream atomic batch (the stream must ``allow_atomic``).

The first message carries ``Nats-Batch-Id`` and ``Nats-Batch-Sequence: 1`` and is sent as a
request: an empty answer means the server opened the batch, an error that it refused it.
The messages after it are plain publishes numbered on; the last one also carries
``Nats-Batch-Commit: 1`` and is answered with the PubAck of the whole batch, or with its
refusal. The server stores every message of a batch or none of them; a batch left open
(e.g. the connection dropped before its commit) is abandoned by the server, unstored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, NaqTimeoutError, ServerError, WriteConflictError
from .names import is_header_value
from .wire import encode_headers, publish_now

if TYPE_CHECKING:
    from .connection import Connection

#: The most messages the server takes in one atomic batch (one more is refused: 10199).
MAX_MESSAGES = 1000
#: The longest batch id the server accepts.
MAX_BATCH_ID = 64
HEADER_BATCH_ID = "Nats-Batch-Id"
HEADER_BATCH_SEQUENCE = "Nats-Batch-Sequence"
HEADER_BATCH_COMMIT = "Nats-Batch-Commit"
#: JetStream error code: the batch reached its commit with a message missing (the server
#: dropped one, e.g. over the stream's ``max_msg_size``).
_INCOMPLETE = 10176
_HEADER_LINE = b"NATS/1.0\r\n"
_END = b"\r\n\r\n"

#: A message's headers: an encoded block (from :func:`naq.transport.encode_headers`), a
#: mapping, or none.
Headers = bytes | Mapping[str, str] | None
#: One message of a batch: subject, payload, headers.
BatchMessage = tuple[str, bytes, Headers]


class AtomicBatch:
    """Messages to store all together or not at all, checked and encoded up front.

    Building one refuses (:class:`~naq.errors.ConfigurationError`, or
    :class:`~naq.errors.PayloadTooLargeError` for a message over the server's
    ``max_payload``) whatever the server would refuse for its shape, so nothing is sent for a
    batch that cannot be; :meth:`commit` then sends it.
    """

    def __init__(
        self, conn: Connection, messages: Sequence[BatchMessage], *, batch_id: str | None = None
    ) -> None:
        if not messages:
            raise ConfigurationError("an atomic batch needs at least one message")
        if len(messages) > MAX_MESSAGES:
            raise ConfigurationError(
                f"an atomic batch holds at most {MAX_MESSAGES} messages, got {len(messages)}"
            )
        self.batch_id = uuid.uuid4().hex if batch_id is None else batch_id
        if not 0 < len(self.batch_id) <= MAX_BATCH_ID or not is_header_value(self.batch_id):
            raise ConfigurationError(
                f"atomic batch id {self.batch_id[:80]!r} is invalid: 1-{MAX_BATCH_ID} "
                "printable characters"
            )
        self._conn = conn
        last = len(messages)
        self._frames: list[tuple[str, bytes, bytes]] = []
        for sequence, (subject, payload, headers) in enumerate(messages, 1):
            block = _with_batch_headers(headers, self.batch_id, sequence, commit=sequence == last)
            conn.check_message(subject, payload, block)  # raises, naming the limit
            self._frames.append((subject, payload, block))

    def __len__(self) -> int:
        return len(self._frames)

    async def commit(self) -> int:
        """Send the batch and wait for the server's verdict; returns the stream sequence of
        its last message.

        Raises :class:`~naq.errors.ServerError` when the server refused the batch (then
        nothing of it is stored), :class:`~naq.errors.NaqTimeoutError` when it did not answer
        in time, :class:`~naq.errors.NaqConnectionError` when the connection failed."""
        conn = self._conn
        (subject, payload, block), rest = self._frames[0], self._frames[1:]
        try:
            opened = await conn.send_nowait(subject, payload, block)
        except NaqTimeoutError:
            stored = "it may or may not be stored" if not rest else "nothing of it was stored"
            raise NaqTimeoutError(
                f"NATS did not answer the start of an atomic batch in time; {stored}"
            ) from None
        except ServerError as exc:
            raise _refused(exc, len(self)) from None
        if not rest:
            return opened  # a batch of one: its first message was also its commit
        nc = conn.nc
        for subject, payload, block in rest[:-1]:
            publish_now(nc, subject, payload, "", block)
        subject, payload, block = rest[-1]
        try:
            return await conn.send_nowait(subject, payload, block)
        except NaqTimeoutError:
            raise NaqTimeoutError(
                f"NATS did not confirm the commit of an atomic batch of {len(self)} messages "
                "in time; it may or may not be stored"
            ) from None
        except ServerError as exc:
            raise _refused(exc, len(self)) from None


async def publish_atomic(
    conn: Connection, messages: Sequence[BatchMessage], *, batch_id: str | None = None
) -> int:
    """Publish ``messages`` as one atomic batch: every one is stored, or none is. Returns the
    stream sequence of the last one; raises as :class:`AtomicBatch` and its ``commit`` do."""
    return await AtomicBatch(conn, messages, batch_id=batch_id).commit()


def _with_batch_headers(headers: Headers, batch_id: str, sequence: int, *, commit: bool) -> bytes:
    """The header block of message ``sequence`` of the batch: its own headers plus the
    batch's."""
    lines = f"{HEADER_BATCH_ID}: {batch_id}\r\n{HEADER_BATCH_SEQUENCE}: {sequence}\r\n"
    if commit:
        lines += f"{HEADER_BATCH_COMMIT}: 1\r\n"
    if headers is None:
        return _HEADER_LINE + lines.encode() + b"\r\n"
    if isinstance(headers, bytes):
        if not (headers.startswith(_HEADER_LINE) and headers.endswith(_END)):
            raise ConfigurationError("a header block must come from encode_headers()")
        return headers[:-2] + lines.encode() + b"\r\n"
    return encode_headers(dict(headers))[:-2] + lines.encode() + b"\r\n"


def _refused(exc: ServerError, count: int) -> ServerError:
    """The error of a refused batch, keeping the server's codes."""
    hint = ""
    if exc.err_code == _INCOMPLETE:
        hint = " (the server dropped one of its messages, e.g. over a limit of the stream)"
    cls = WriteConflictError if isinstance(exc, WriteConflictError) else ServerError
    return cls(
        f"NATS refused an atomic batch of {count} messages; nothing of it was stored: {exc}{hint}",
        code=exc.code,
        err_code=exc.err_code,
    )
