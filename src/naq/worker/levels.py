"""The priorities a worker pulls from, above the default 0 (see ``docs/design.md``).

A job of priority p > 0 waits on ``naq.queue.<queue>.<p>`` for a consumer of its own. A
worker pulls from that consumer once the priority has jobs: those waiting at start or at a
heartbeat (a job fired by a schedule lands without a publish anyone hears), and those
published later (a core subscription on the priority subjects tells it at once). A queue
that never uses a priority costs no consumer for it. Consumers of higher priorities are
asked first, and lower ones keep room for what their requests in flight may bring in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from .. import constants as c
from ..transport import Connection, ConsumerSettings, Message, Subscription, streams
from .puller import Puller
from .writes import with_retries


class PriorityLevels:
    """The priority consumers one worker pulls from, added as their jobs appear.

    ``pullers`` is the worker's list of pullers: a new one is added to it, and the list is
    kept highest priority first."""

    def __init__(
        self,
        conn: Connection,
        queues: list[str],
        consumer_settings: ConsumerSettings,
        pullers: list[Puller],
        *,
        on_job: Callable[[str, Message, int], None],
        room: Callable[[], int],
        fill: Callable[[], None],
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self._conn = conn
        self._queues = queues
        self._settings = consumer_settings
        self._pullers = pullers
        self._on_job = on_job
        self._room = room
        self._fill = fill
        self._spawn = spawn
        #: (queue, priority) levels pulled from, or being set up (0 always)
        self._levels: set[tuple[str, int]] = {(queue, 0) for queue in queues}
        self._watches: dict[str, Subscription] = {}  # by queue
        self._priority_pullers: dict[tuple[str, int], Puller] = {}
        self._activating: list[int] = []  # priorities whose consumer is being set up

    async def watch(self) -> None:
        """Subscribe to every queue's priority subjects, then pull those with jobs."""
        for queue in self._queues:
            if queue not in self._watches:
                subject = c.queue_subject(queue) + ".*"
                self._watches[queue] = await self._conn.subscribe(subject, self._seen(queue))
        await self.scan()

    async def scan(self) -> None:
        """Start pulling each priority that has jobs waiting (at start, and at every
        heartbeat while some priority is not pulled yet)."""
        for queue in self._queues:
            if all((queue, p) in self._levels for p in c.PRIORITY_LEVELS):
                continue
            prefix = c.queue_subject(queue) + "."
            waiting = await streams.subject_counts(self._conn, c.JOBS_STREAM, prefix + "*")
            for subject in waiting:
                level = subject.removeprefix(prefix)
                if level.isdigit() and int(level) in c.PRIORITY_LEVELS:
                    await self._add(queue, int(level))

    def room_for(self, priority: int) -> Callable[[], int]:
        """Room for the consumers of ``priority``: what the requests to higher priorities
        in flight may bring in is kept for them (they are answered at once), and nothing
        while a higher priority's consumer is being set up."""

        def room() -> int:
            if self._activating and max(self._activating) > priority:
                return 0
            above = self._priority_pullers.values()
            return self._room() - sum(p.outstanding for p in above if p.priority > priority)

        return room

    def _seen(self, queue: str) -> Callable[[Message], None]:
        """The handler of the watch of ``queue``'s priority subjects: a job was published."""
        cut = len(c.queue_subject(queue)) + 1

        def seen(msg: Message) -> None:
            level = msg.subject[cut:]
            if not level.isdigit() or int(level) not in c.PRIORITY_LEVELS:
                return
            priority = int(level)
            puller = self._priority_pullers.get((queue, priority))
            if puller is not None:
                puller.notify()
            else:
                self._spawn(self._add(queue, priority))

        return seen

    async def _add(self, queue: str, priority: int) -> None:
        """Start pulling ``queue``'s jobs of ``priority`` (its consumer is created if need be)."""
        key = (queue, priority)
        if key in self._levels:
            return
        self._levels.add(key)
        # lower priorities ask for nothing more until this one is pulled (its consumer may
        # take a few round trips to set up): jobs held meanwhile would all go first
        self._activating.append(priority)
        try:
            name = await with_retries(
                f"preparing the priority {priority} consumer of {queue}",
                lambda: self._conn.ensure_consumer(queue, self._settings, priority),
            )
        except Exception as exc:  # noqa: BLE001 - tried again when the next such job arrives
            self._levels.discard(key)
            self._activated(priority)
            logger.warning("cannot pull priority {} jobs of {}: {}", priority, queue, exc)
            return
        room = self.room_for(priority)
        puller = Puller(self._conn, queue, name, self._on_job, room, priority, on_answer=self._fill)
        self._priority_pullers[key] = puller
        self._pullers.append(puller)
        self._pullers.sort(key=lambda p: -p.priority)  # higher priorities are asked first
        logger.debug("pulling priority {} jobs of queue {}", priority, queue)
        try:
            await puller.start()
        finally:
            self._activated(priority)

    def _activated(self, priority: int) -> None:
        """Setting up ``priority`` is over: the lower priorities may ask for jobs again."""
        self._activating.remove(priority)
        self._fill()
