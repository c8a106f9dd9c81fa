"""The hooks a producer runs: ``before_enqueue`` and ``after_enqueue`` around each enqueue,
and ``on_cancel`` for a scheduled or deferred job it cancelled before any worker saw it; of
the global registry, of the queue's own, and the events when they are on."""

from __future__ import annotations

from typing import Any

from .events import EventPublisher, ProducerEvents
from .hooks import HookRunner, Hooks, cancelled_run, global_hooks
from .messages import hook_headers
from .models import JobEnvelope, JobRecord
from .settings import Settings
from .transport import Connection


class EnqueueHooks:
    """Runs a queue's enqueue hooks (see :mod:`naq.hooks`)."""

    __slots__ = ("_builtin", "_events_on", "_registries", "_settings", "runner")

    def __init__(self, own: Hooks, settings: Settings) -> None:
        self._builtin = Hooks()
        self._settings = settings
        self._events_on = False
        self._registries = (global_hooks, own, self._builtin)
        self.runner = HookRunner(*self._registries)

    async def attach(self, conn: Connection) -> None:
        """Start sending ``enqueued`` events on ``conn`` if events are on (once)."""
        if self._events_on or not self._settings.events:
            return
        await conn.ensure_events_stream()
        self._builtin.add_middleware(ProducerEvents(EventPublisher(conn)))
        self._events_on = True

    @property
    def active(self) -> bool:
        """Whether an enqueue has any hook to run (or may get one: events on). A plain
        look into the registries: ``enqueue_sync`` asks it of a fresh queue each call."""
        return self._settings.events or any(
            r.has("before_enqueue") or r.has("after_enqueue") for r in self._registries
        )

    async def before(self, job: Any, envelope: JobEnvelope) -> None:
        """Run ``before_enqueue`` for ``job``; the headers its hooks set go into the
        envelope (checked: see :func:`naq.messages.hook_headers`)."""
        if not self.runner.has("before_enqueue"):
            return
        await self.runner.fire_awaiting("before_enqueue", job)
        if job.headers:
            job.headers = envelope.headers = hook_headers(job.headers)

    async def after(self, job: Any) -> None:
        """Run ``after_enqueue`` for ``job`` (stored)."""
        if self.runner.has("after_enqueue"):
            await self.runner.fire_awaiting("after_enqueue", job)

    def cancelled(self, record: JobRecord) -> None:
        """Run ``on_cancel`` for a job this producer cancelled before any worker saw it
        (asked for, or because a job it depends on was cancelled)."""
        if self.runner.has("on_cancel"):
            self.runner.fire("on_cancel", cancelled_run(record))
