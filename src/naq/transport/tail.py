"""Reading a stream in order as it grows: the messages on a subject filter from a start
point, then each new one as it is stored (an ordered consumer, which the client restarts by
itself after a gap or a reconnect)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.api

from .errors import translate, translated
from .names import check_subject
from .streams import StoredMessage

if TYPE_CHECKING:
    from .connection import Connection

#: How long the server keeps the consumer of a reader that went away, seconds.
_INACTIVE = 30.0
#: How often the server tells an idle reader it is still there, seconds.
_HEARTBEAT = 5.0


class Tail:
    """The messages of one stream on a subject filter, in stream order.

    ``async for message, pending in tail``: ``pending`` is how many stored messages matching
    the filter come after this one at the time it was sent (0: caught up)."""

    def __init__(self, sub: Any, pending: int) -> None:
        self._sub = sub
        #: messages matching the filter stored when the reader started (from its start)
        self.pending_at_start = pending

    def __aiter__(self) -> AsyncIterator[tuple[StoredMessage, int]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[tuple[StoredMessage, int]]:
        try:
            async for msg in self._sub.messages:
                meta = msg.metadata
                headers = {str(k): str(v) for k, v in (msg.headers or {}).items()}
                stored = StoredMessage(
                    int(meta.sequence.stream), str(msg.subject), bytes(msg.data or b""), headers
                )
                yield stored, int(meta.num_pending or 0)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise translate(exc, "reading a stream") from None

    async def stop(self) -> None:
        """Stop reading (quietly: the connection may be gone)."""
        try:
            await self._sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the server drops the consumer by itself
            pass


async def last_sequence(conn: Connection, stream: str) -> tuple[int, int]:
    """``(first, last)`` sequence of ``stream`` now."""
    with translated(f"info of stream {stream}"):
        info = await conn.js.stream_info(stream)
    return int(info.state.first_seq or 0), int(info.state.last_seq or 0)


async def tail(
    conn: Connection,
    stream: str,
    subject_filter: str,
    *,
    start_seq: int | None = None,
    start_time: datetime | None = None,
) -> Tail:
    """Read ``stream``'s messages on ``subject_filter``: from sequence ``start_seq``, from
    ``start_time``, or (neither) only those stored from now on."""
    check_subject(subject_filter)
    config = nats.js.api.ConsumerConfig(
        inactive_threshold=_INACTIVE,
        mem_storage=True,
        ack_policy=nats.js.api.AckPolicy.NONE,
    )
    if start_seq is not None:
        config.deliver_policy = nats.js.api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = max(1, start_seq)
    elif start_time is not None:
        config.deliver_policy = nats.js.api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = start_time
    else:
        config.deliver_policy = nats.js.api.DeliverPolicy.NEW
    with translated(f"reading stream {stream}"):
        sub = await conn.js.subscribe(
            subject_filter,
            stream=stream,
            ordered_consumer=True,
            idle_heartbeat=_HEARTBEAT,
            config=config,
        )
        try:
            info = await sub.consumer_info()
            # what it sent already (pushed before this answer) plus what it has still to send
            delivered = int(getattr(info.delivered, "consumer_seq", 0) or 0)
            pending = int(info.num_pending or 0) + delivered
        except BaseException:
            await sub.unsubscribe()
            raise
    return Tail(sub, pending)
