"""The dead-letter stream: jobs that never ran properly or failed for good, kept with their
raw bytes, original headers, reason, queue and time, so they can be inspected and requeued."""

from __future__ import annotations

import time
from collections.abc import Mapping

from . import constants as c
from .connection import Connection

H_REASON = "Naq-Dlq-Reason"
H_QUEUE = "Naq-Dlq-Queue"
H_JOB_ID = "Naq-Dlq-Job-Id"
H_FAILED_AT = "Naq-Dlq-Failed-At"
H_KIND = "Naq-Dlq-Kind"
H_ORIGINAL_PREFIX = "Naq-Orig-"


class DeadLetters:
    """Publishes dead letters; borrows a :class:`Connection`."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    async def publish(
        self,
        *,
        queue: str,
        payload: bytes,
        reason: str,
        kind: str,
        job_id: str | None = None,
        original_headers: Mapping[str, str] | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """Store one dead letter and wait until the server has it; returns its id (sequence).

        ``dedupe_key`` (e.g. stream sequence + delivery) makes a retried publish store once.
        """
        await self._conn.ensure_dlq_stream()
        headers: dict[str, str] = {
            H_REASON: _one_line(reason)[:2000],
            H_QUEUE: queue,
            H_FAILED_AT: f"{time.time():.6f}",
            H_KIND: kind,
        }
        if job_id:
            headers[H_JOB_ID] = job_id
        if dedupe_key:
            headers[c.HEADER_MSG_ID] = f"dlq-{dedupe_key}"
        for name, value in (original_headers or {}).items():
            if name.startswith("Nats-") and name != c.HEADER_MSG_ID:
                continue  # server-interpreted headers must not act on the DLQ stream
            headers[f"{H_ORIGINAL_PREFIX}{name}"] = _one_line(str(value))
        ack = await self._conn.js.publish(c.dlq_subject(queue), payload, headers=headers)
        return int(ack.seq)


def _one_line(text: str) -> str:
    return " ".join(text.split())
