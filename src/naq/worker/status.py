"""The worker's own record in the workers bucket, refreshed every heartbeat.

Each write carries a per-message TTL of three heartbeats, so the record of a worker that
died disappears by itself; a clean exit deletes it at once."""

from __future__ import annotations

import math
import os
import socket
import time

from loguru import logger

from .. import constants as c
from ..models import WorkerRecord, encode
from ..transport import Connection, kv
from .holds import LIMITED, RETRYING, HeldBack


class WorkerStatus:
    """Writes and removes one worker's record."""

    def __init__(
        self,
        conn: Connection,
        worker_id: str,
        queues: list[str],
        concurrency: int,
        heartbeat_interval: float,
    ) -> None:
        self._conn = conn
        self.record = WorkerRecord(
            worker_id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            concurrency=concurrency,
            started_at=time.time(),
            last_heartbeat=time.time(),
        )
        self.ttl = max(2, math.ceil(heartbeat_interval * 3))

    async def beat(
        self,
        running_jobs: list[str],
        done: int,
        failed: int,
        status: str,
        held: HeldBack | None = None,
    ) -> None:
        """Write the current state (raises on connection trouble; caller decides)."""
        record = self.record
        if held is not None:
            record.retrying, record.limited = held.counts(RETRYING), held.counts(LIMITED)
        record.running_jobs = running_jobs
        record.jobs_done = done
        record.jobs_failed = failed
        record.status = status
        record.last_heartbeat = time.time()
        await kv.put(self._conn, c.WORKERS_BUCKET, record.worker_id, encode(record), ttl=self.ttl)

    async def remove(self) -> None:
        """Delete the record (clean exit)."""
        try:
            await kv.purge(self._conn, c.WORKERS_BUCKET, self.record.worker_id, ttl=60)
        except Exception as exc:  # noqa: BLE001 - it expires by itself anyway
            logger.debug("could not remove worker record: {}", exc)
