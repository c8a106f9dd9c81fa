"""One reading of NATS for every open page: while at least one page's live stream is open,
the hub refreshes the counts (workers and queues) every :data:`TICK` seconds and follows
the events stream, and hands each open page the same :class:`Update`s.

So 20 open pages cost what one does: one ``list_workers`` + ``list_queues`` per tick and one
events consumer, not 20 of each. Events are not passed on one by one: every
:data:`EVENTS_EVERY` seconds a page gets the newest :data:`KEPT_EVENTS` of them (overall
and per queue) and the ids of every job that had one, so a busy system (thousands of events
a second) costs each page a few fragments a second, and a job page still hears of each
change of its job."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loguru import logger

from ..errors import NaqException
from ..events import Event, decode_events, job_ids_of, queue_of, read_event_messages
from ..info import QueueInfo, WorkerInfo
from ..transport import StoredMessage
from .backend import Backend

#: Seconds between two refreshes of the counts.
TICK = 2.0
#: Seconds between two hand-overs of the events read meanwhile.
EVENTS_EVERY = 0.5
#: The newest events kept per hand-over, overall and per queue.
KEPT_EVENTS = 30
#: Updates a slow page may fall behind by before the newest are dropped for it.
PAGE_BACKLOG = 100


@dataclass(frozen=True, slots=True)
class Counts:
    """A refresh of the counts (``connected`` False: NATS is away, the lists are empty)."""

    connected: bool
    queues: list[QueueInfo] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Events:
    """The events read since the last hand-over: the newest overall and per queue (oldest
    first), and every job that had one (only while a job page is open)."""

    recent: list[Event]
    by_queue: dict[str, list[Event]]
    job_ids: frozenset[str]


Update = Counts | Events


@dataclass(slots=True)
class _Window:
    """Events messages gathered between two hand-overs, undecoded: only the newest few are
    decoded at the hand-over (a busy system stores hundreds of messages a second, each of
    up to hundreds of events)."""

    recent: deque[StoredMessage] = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    by_queue: dict[str, deque[StoredMessage]] = field(default_factory=dict)
    job_ids: set[str] = field(default_factory=set)

    def add(self, message: StoredMessage, want_job_ids: bool) -> None:
        self.recent.append(message)
        queue = queue_of(message.subject)
        kept = self.by_queue.get(queue)
        if kept is None:
            kept = self.by_queue[queue] = deque(maxlen=KEPT_EVENTS)
        kept.append(message)
        if want_job_ids:
            self.job_ids.update(job_ids_of(message.data))

    def take(self) -> Events | None:
        if not self.recent:
            return None
        taken = Events(
            recent=_newest(self.recent),
            by_queue={queue: _newest(kept) for queue, kept in self.by_queue.items()},
            job_ids=frozenset(self.job_ids),
        )
        self.recent.clear()
        self.by_queue.clear()
        self.job_ids.clear()
        return taken


def _newest(messages: deque[StoredMessage]) -> list[Event]:
    """The newest :data:`KEPT_EVENTS` events of ``messages``, oldest first."""
    events: list[Event] = []
    for message in reversed(messages):
        events[:0] = decode_events(message.data, message.seq)
        if len(events) >= KEPT_EVENTS:
            break
    return events[-KEPT_EVENTS:]


class LiveHub:
    """Feeds the open pages' live streams (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pages: set[asyncio.Queue[Update]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._latest: Counts | None = None
        self._job_pages = 0

    def open(self, *, job_page: bool = False) -> asyncio.Queue[Update]:
        """A page's stream opens: its queue of updates (the latest counts already in it).
        ``job_page``: it needs the ids of the jobs with events (:attr:`Events.job_ids`)."""
        self._job_pages += job_page
        page: asyncio.Queue[Update] = asyncio.Queue(PAGE_BACKLOG)
        if self._latest is not None:
            page.put_nowait(self._latest)
        self._pages.add(page)
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._refresh(), name="naq-dashboard-counts"),
                asyncio.create_task(self._follow(), name="naq-dashboard-events"),
            ]
        return page

    async def close(self, page: asyncio.Queue[Update], *, job_page: bool = False) -> None:
        """A page's stream closed; the last one stops the reading."""
        self._job_pages -= job_page
        self._pages.discard(page)
        if self._pages or not self._tasks:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._latest = None

    def _hand(self, update: Update) -> None:
        for page in self._pages:
            with contextlib.suppress(asyncio.QueueFull):
                page.put_nowait(update)

    async def _refresh(self) -> None:
        backend = self._backend
        while True:
            counts = Counts(connected=False)
            if backend.connected:
                try:
                    workers = await backend.workers()
                    queues = await backend.queues()
                    counts = Counts(connected=backend.connected, queues=queues, workers=workers)
                except NaqException as exc:
                    logger.debug("dashboard refresh failed: {}", exc)
            self._latest = counts
            self._hand(counts)
            await asyncio.sleep(TICK)

    async def _follow(self) -> None:
        window = _Window()
        since: datetime | None = datetime.now(UTC)
        next_seq: int | None = None

        def hand_over() -> None:
            taken = window.take()
            if taken is not None:
                self._hand(taken)

        handing = asyncio.create_task(_every(EVENTS_EVERY, hand_over))
        try:
            while True:
                try:
                    found = read_event_messages(self._backend.conn, start_seq=next_seq, since=since)
                    async for message in found:
                        next_seq, since = message.seq + 1, None
                        window.add(message, want_job_ids=bool(self._job_pages))
                except NaqException as exc:
                    logger.debug("dashboard events reader stopped: {}", exc)
                await asyncio.sleep(TICK)  # NATS away: read again from where it was
        finally:
            handing.cancel()
            await asyncio.gather(handing, return_exceptions=True)


async def _every(seconds: float, action: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        action()
