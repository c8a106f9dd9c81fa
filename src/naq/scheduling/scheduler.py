"""The :class:`Scheduler` process behind ``naq scheduler``: enqueues the runs of recurring
schedules. Any number may run; a KV lock elects the one that acts (see :mod:`.lock`)."""

from __future__ import annotations

import asyncio
import uuid

from loguru import logger

from ..errors import ConfigurationError, NaqConnectionError
from ..names import check_worker_name
from ..results import ResultStore
from ..settings import Settings, load_settings
from ..signals import install_stop_handlers, remove_stop_handlers
from ..transport import Connection
from .leader import LeaderSession
from .lock import LeaderLock
from .misfire import DEFAULT_GRACE
from .store import ScheduleStore

_TRANSIENT = (NaqConnectionError, OSError, TimeoutError)


class Scheduler:
    """Enqueues runs of recurring schedules (one-off ``enqueue_at`` jobs need no scheduler).

    ``await Scheduler(nats_url).run()`` runs until :meth:`request_stop` (or SIGTERM/SIGINT
    when run in the main thread). Start as many as you like: one is leader at a time, the
    others take over within ``lock_ttl`` seconds if it dies or stalls, and no run is ever
    enqueued twice. A run more than ``misfire_grace`` seconds late is a misfire (see
    ``schedule(..., misfire=...)``).
    """

    def __init__(
        self,
        nats_url: str | None = None,
        *,
        scheduler_id: str | None = None,
        lock_ttl: float = 5.0,
        misfire_grace: float = DEFAULT_GRACE,
        settings: Settings | None = None,
    ) -> None:
        self.settings = (settings or load_settings()).with_url(nats_url)
        for name, value, low in (
            ("lock_ttl", lock_ttl, 1.0),
            ("misfire_grace", misfire_grace, 0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
                raise ConfigurationError(f"{name} must be a number >= {low:g}, got {value!r}")
        prefix = (
            "scheduler" if scheduler_id is None else check_worker_name(scheduler_id, "scheduler_id")
        )
        self.scheduler_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.lock_ttl = float(lock_ttl)
        self.misfire_grace = float(misfire_grace)
        self.poll_interval = min(1.0, self.lock_ttl / 4)
        #: counters: ``runs`` (runs enqueued by this process), ``terms`` (times it led)
        self.stats: dict[str, int] = {"runs": 0, "terms": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._session: LeaderSession | None = None
        self._lock: LeaderLock | None = None

    @property
    def is_leader(self) -> bool:
        """True while this scheduler holds the lock and acts."""
        return self._session is not None and self._lock is not None and self._lock.held

    def run_sync(self) -> None:
        """Run until stopped (blocking)."""
        asyncio.run(self.run())

    def request_stop(self) -> None:
        """Ask the scheduler to stop (thread-safe); it releases the lock on the way out."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._begin_stop)

    async def stop(self) -> None:
        """Stop and wait until :meth:`run` has returned."""
        self.request_stop()
        if self._finished is not None:
            await self._finished.wait()

    def _begin_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._session is not None:
            self._session.end("stopping")

    async def run(self) -> None:
        """Connect, then lead or stand by until stopped."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        conn = Connection(self.settings, name=f"naq-{self.scheduler_id}")
        try:
            await conn.connect()
            conn.add_reconnect_listener(self._on_reconnect)
            install_stop_handlers(self._loop, lambda _sig: self._begin_stop())
            await conn.ensure_jobs_stream()
            if self.settings.events:
                await conn.ensure_events_stream()
            await ScheduleStore(conn).ready()
            await ResultStore(conn).ready()
            self._lock = LeaderLock(conn, self.scheduler_id, self.lock_ttl)
            logger.info("scheduler {} started", self.scheduler_id)
            await self._elect_loop(conn, self._lock)
        finally:
            remove_stop_handlers(self._loop)
            if self._lock is not None and self._lock.revision is not None:
                await self._lock.release()
            await conn.close()
            self._finished.set()
            if self._lock is not None:
                logger.info(
                    "scheduler {} stopped ({} runs enqueued)", self.scheduler_id, self.stats["runs"]
                )

    async def _elect_loop(self, conn: Connection, lock: LeaderLock) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                if await lock.acquire():
                    await self._lead(conn, lock)
                    continue
            except _TRANSIENT as exc:
                logger.warning("scheduler {}: {}; retrying", self.scheduler_id, exc)
            try:
                await asyncio.wait_for(self._stop.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def _lead(self, conn: Connection, lock: LeaderLock) -> None:
        self.stats["terms"] += 1
        logger.info("scheduler {} is the leader", self.scheduler_id)
        session = LeaderSession(
            conn, self.settings, lock, grace=self.misfire_grace, stats=self.stats
        )
        self._session = session
        try:
            await session.run()
        finally:
            self._session = None
        logger.info("scheduler {} leader term ended: {}", self.scheduler_id, session.ended)

    async def _on_reconnect(self) -> None:
        # the watch's consumer may be gone after a reconnect: reload from the bucket
        if self._session is not None:
            self._session.end("reconnected")
