"""The cancel requests a worker knows of (see :mod:`naq.cancellation`).

Kept current by a core subscription on the request keys, so a request reaches every live
worker the moment it is stored, and re-read in full at start and after every reconnect (a
request stored while the connection was down was pushed to nobody)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loguru import logger

from .. import constants as c
from ..cancellation import CANCEL_PREFIX, cancel_requests_subject, job_id_of
from ..dependencies import RESULTS_STREAM, bounded
from ..transport import Connection, Message, Subscription, kv, streams


class CancelRequests:
    """Ids of the jobs whose cancellation was asked; ``on_request`` is called for each new
    request (the worker stops the job if it runs it)."""

    def __init__(self, conn: Connection, on_request: Callable[[str], None]) -> None:
        self._conn = conn
        self._on_request = on_request
        self._ids: set[str] = set()
        self._sub: Subscription | None = None

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    async def start(self) -> None:
        """Subscribe, then read the requests stored before (a request stored in between
        is both pushed and read: harmless)."""
        self._sub = await self._conn.subscribe(cancel_requests_subject(), self._pushed)
        await self.reload()

    async def reload(self) -> None:
        """Read every stored request (at start and after a reconnect)."""
        counts = await streams.subject_counts(self._conn, RESULTS_STREAM, cancel_requests_subject())
        ids = [job_id_of(subject) for subject in counts]

        async def live(job_id: str) -> str | None:
            entry = await kv.get(self._conn, c.RESULTS_BUCKET, CANCEL_PREFIX + job_id)
            return job_id if entry is not None else None

        for job_id in await bounded(live(i) for i in ids):
            if job_id is not None and job_id not in self._ids:
                self._add(job_id)

    def _pushed(self, msg: Message) -> None:
        job_id = job_id_of(msg.subject)
        if kv.is_removal(msg.headers, msg.data):
            self._ids.discard(job_id)
        else:
            self._add(job_id)

    def _add(self, job_id: str) -> None:
        self._ids.add(job_id)
        try:
            self._on_request(job_id)
        except Exception as exc:  # noqa: BLE001 - never break the subscription
            logger.warning("cancelling job {} failed: {}", job_id, exc)

    def forget(self, job_id: str) -> None:
        """Drop ``job_id`` (its request was acted on and removed)."""
        self._ids.discard(job_id)

    async def stop(self) -> None:
        """Unsubscribe."""
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await asyncio.shield(sub.unsubscribe())
