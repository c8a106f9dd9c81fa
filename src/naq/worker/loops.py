"""The worker's background loops, apart from the job pipeline: heartbeat (the worker's own
record), leases (``in_progress`` for every held message), the pull watchdog (lost pull
requests, a connection the server closed), and burst mode (stop once the queues are empty).

Each loop ends on :attr:`Loops.closing` as well as on cancellation: a nats-py request
interrupted by a cancel can swallow the ``CancelledError``, and shutdown must not wait for
such a loop forever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from loguru import logger

from .. import constants as c
from ..transport import IN_PROGRESS, Connection, reply_to, streams
from .delivery import Delivery
from .puller import Puller


def renew_lease(delivery: Delivery) -> None:
    """Renew a held message's lease (the connection may be gone: then nothing to do)."""
    try:
        reply_to(delivery.msg, IN_PROGRESS)
    except Exception as exc:  # noqa: BLE001 - reconnecting or closed
        logger.debug("could not renew the lease of {}: {}", delivery.job_id, exc)


class Loops:
    """Starts and stops the background loops of one running worker."""

    def __init__(
        self,
        conn: Connection,
        *,
        heartbeat: Callable[[], Awaitable[None]],
        heartbeat_interval: float,
        held: Callable[[], Iterable[Delivery]],
        ack_wait: float,
        pullers: list[Puller],
        queues: list[str],
        idle: Callable[[], bool],
        stop: Callable[[], None],
        burst: bool,
    ) -> None:
        self._conn = conn
        self._heartbeat = heartbeat
        self._heartbeat_interval = heartbeat_interval
        self._held = held
        self._ack_wait = ack_wait
        self._pullers = pullers
        self._queues = queues
        self._idle = idle
        self._stop = stop
        self._burst = burst
        self.closing = False
        #: Why the worker has to stop on its own (the server closed its connection).
        self.failure: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the loops on the running event loop."""
        loops = [self._heartbeat_loop(), self._lease_loop(), self._watchdog_loop()]
        if self._burst:
            loops.append(self._burst_loop())
        self._tasks = [asyncio.create_task(loop) for loop in loops]

    async def close(self) -> None:
        """Stop the loops (waits a bounded time)."""
        self.closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks = []

    async def _heartbeat_loop(self) -> None:
        while not self.closing:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self._heartbeat()
            except Exception as exc:  # noqa: BLE001 - reconnecting; try next beat
                logger.debug("heartbeat failed: {}", exc)

    async def _lease_loop(self) -> None:
        """Renew the lease of every held message well inside ``ack_wait``."""
        interval = max(0.2, self._ack_wait / 3)
        while not self.closing:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for delivery in list(self._held()):
                if not delivery.settled and now - delivery.received_at >= interval * 0.9:
                    renew_lease(delivery)

    async def _watchdog_loop(self) -> None:
        """Re-issue pull requests the server may have lost (e.g. across a restart); stop the
        worker when the server closed its connection for good (no zombie process)."""
        while not self.closing:
            await asyncio.sleep(1.0)
            if self._conn.lost is not None and self.failure is None:
                self.failure = self._conn.lost
                logger.error("stopping: the NATS connection is gone ({})", self._conn.lost)
                self._stop()
                return
            for puller in self._pullers:
                if puller.stale():
                    puller.reset()
                puller.refresh()
                puller.request_more()

    async def _burst_loop(self) -> None:
        while not self.closing:
            await asyncio.sleep(0.2)
            if not self._idle():
                continue
            if await self._queues_empty():
                # messages may be in flight to us: give them a moment to land
                await asyncio.sleep(0.1)
                if self._idle() and await self._queues_empty():
                    logger.info("burst: queues are empty, stopping")
                    self._stop()
                    return

    async def _queues_empty(self) -> bool:
        for queue in self._queues:
            counts = await streams.consumer_counts(
                self._conn, c.JOBS_STREAM, c.consumer_name(queue)
            )
            if counts is not None and counts.paused and not counts.ack_pending:
                continue  # paused: nothing can come; a burst worker does not wait for resume
            if counts is not None and (counts.pending or counts.ack_pending):
                return False
            # jobs of a priority above 0, pulled by another consumer or by none yet
            priorities = c.queue_subject(queue) + ".*"
            if await streams.count_subjects(self._conn, c.JOBS_STREAM, priorities):
                return False
        return True
