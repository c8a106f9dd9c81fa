"""Live updates for the pages: Server-Sent Events (``GET /live/...``) carrying HTML
fragments that htmx's SSE extension swaps in.

Each stream sends, every :data:`TICK` seconds, a ``status`` fragment (empty, or the
"disconnected" banner while NATS is away) and the page's counts; and, as the events stream
(:func:`naq.events.read_events`, filled by workers run with ``NAQ_EVENTS=1``) brings them,
one ``activity`` row per job event. A stream's state (the throughput samples of the plot)
lives in the stream, for as long as the page is open."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import NaqException
from ..events import Event, read_events
from ..settings import validate_queue_name
from . import views
from .rendering import PLOT_SAMPLES, backend_of, render_text

router = APIRouter(prefix="/live", include_in_schema=False)

#: Seconds between two refreshes of the counts.
TICK = 2.0
#: Fragments a slow page may fall behind by before the newest are dropped.
_BACKLOG = 500

Message = tuple[str, str]
Tick = Callable[[], Awaitable[list[Message]]]
OnEvent = Callable[[Event], Awaitable[list[Message]]]


def sse_message(name: str, html: str) -> str:
    """One SSE message: ``event: name`` and the fragment as ``data:`` lines."""
    lines = html.strip().splitlines() or [""]
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _status(request: Request, ok: bool) -> Message:
    return "status", render_text(request, "fragments/status.html", ok=ok)


async def _stream(
    request: Request, tick: Tick, on_event: OnEvent | None, *, queue: str | None = None
) -> AsyncIterator[str]:
    """The SSE stream of one open page (following the events stream unless ``on_event``
    is ``None``)."""
    backend = backend_of(request)
    out: asyncio.Queue[Message] = asyncio.Queue(_BACKLOG)
    since = datetime.now(UTC)  # events from now on, even those stored while it subscribes

    def put(messages: list[Message]) -> None:
        for message in messages:
            with contextlib.suppress(asyncio.QueueFull):
                out.put_nowait(message)

    async def ticking() -> None:
        while True:
            try:
                put(await tick() if backend.connected else [])
                put([_status(request, backend.connected)])
            except NaqException:
                put([_status(request, False)])
            await asyncio.sleep(TICK)

    async def following() -> None:
        nonlocal since
        while on_event is not None:
            try:
                found = read_events(backend.conn, queue=queue, since=since, follow=True)
                async for event in found:
                    since = max(since, event.at)
                    put(await on_event(event))
            except NaqException:
                pass
            await asyncio.sleep(TICK)

    tasks = [asyncio.create_task(ticking()), asyncio.create_task(following())]
    try:
        yield "retry: 2000\n\n"
        while True:
            name, html = await out.get()
            yield sse_message(name, html)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _response(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _activity(request: Request, event: Event) -> list[Message]:
    if event.job_id is None:
        return []
    row = render_text(request, "fragments/event_row.html", event=event)
    messages: list[Message] = [("activity", row)]
    if event.kind in views.FAILURE_KINDS:
        messages.append(("failure", row))
    return messages


async def _no_counts() -> list[Message]:
    return []


@router.get("/status")
async def status_stream(request: Request) -> StreamingResponse:
    """Only the connection state (the pages without live counts)."""
    return _response(_stream(request, _no_counts, None))


@router.get("/overview")
async def overview_stream(request: Request) -> StreamingResponse:
    """The overview's live parts: queue and worker counts, the throughput plot, activity."""
    backend = backend_of(request)
    samples: deque[float] = deque(maxlen=PLOT_SAMPLES)

    async def tick() -> list[Message]:
        workers = await backend.workers()
        queues = await backend.queues()
        samples.append(sum(q.completed_last_minute + q.failed_last_minute for q in queues) / 60)
        return [
            ("queues", render_text(request, "fragments/queues_table.html", queues=queues)),
            ("workers", render_text(request, "fragments/workers_table.html", workers=workers)),
            ("plot", render_text(request, "fragments/plot.html", samples=list(samples))),
        ]

    return _response(_stream(request, tick, functools.partial(_activity, request)))


@router.get("/queues/{name}")
async def queue_stream(request: Request, name: str) -> StreamingResponse:
    """A queue page's live parts: its state line and the jobs of its events."""
    validate_queue_name(name)
    backend = backend_of(request)

    async def tick() -> list[Message]:
        queues = {q.name: q for q in await backend.queues()}
        html = render_text(request, "fragments/queue_state.html", name=name, info=queues.get(name))
        return [("state", html)]

    return _response(_stream(request, tick, functools.partial(_activity, request), queue=name))


@router.get("/jobs/{job_id}")
async def job_stream(request: Request, job_id: str) -> StreamingResponse:
    """A job page's live part: its status, progress and attempts, refreshed on each of its
    events and every tick."""
    backend = backend_of(request)

    async def tick() -> list[Message]:
        view = await views.job_view(backend, job_id)
        return [("job", render_text(request, "fragments/job_live.html", view=view))]

    async def on_event(event: Event) -> list[Message]:
        return await tick() if event.job_id == job_id else []

    return _response(_stream(request, tick, on_event))
