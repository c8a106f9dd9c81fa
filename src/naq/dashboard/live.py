"""Live updates for the pages: Server-Sent Events (``GET /live/...``) carrying HTML
fragments that htmx's SSE extension swaps in.

Every open page is fed by the app's one :class:`~.hub.LiveHub`: at each refresh of the
counts (every :data:`~.hub.TICK` seconds) a ``status`` fragment (empty, or the
"disconnected" banner while NATS is away) and the page's counts; at each hand-over of
events (workers run with ``NAQ_EVENTS=1``) an ``activity`` row for each of the newest
events. A stream's own state (the throughput samples of the plot) lives in the stream, for
as long as the page is open."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..errors import NaqException
from ..events import Event
from ..settings import validate_queue_name
from . import views
from .hub import Counts, Events, LiveHub
from .rendering import PLOT_SAMPLES, backend_of, render_text

router = APIRouter(prefix="/live", include_in_schema=False)

Message = tuple[str, str]
OnCounts = Callable[[Counts], Awaitable[list[Message]]]
OnEvents = Callable[[Events], Awaitable[list[Message]]]


def sse_message(name: str, html: str) -> str:
    """One SSE message: ``event: name`` and the fragment as ``data:`` lines."""
    lines = html.strip().splitlines() or [""]
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _status(request: Request, ok: bool) -> Message:
    return "status", render_text(request, "fragments/status.html", ok=ok)


def hub_of(request: Request) -> LiveHub:
    """The app's :class:`~.hub.LiveHub`."""
    hub: LiveHub = request.app.state.hub
    return hub


async def _nothing(update: Counts | Events) -> list[Message]:
    return []


async def _stream(
    request: Request,
    on_counts: OnCounts = _nothing,
    on_events: OnEvents = _nothing,
    *,
    job_page: bool = False,
) -> AsyncIterator[str]:
    """The SSE stream of one open page, from the hub's updates."""
    hub = hub_of(request)
    page = hub.open(job_page=job_page)
    try:
        yield "retry: 2000\n\n"
        while True:
            update = await page.get()
            try:
                if isinstance(update, Counts):
                    messages = [_status(request, update.connected)]
                    if update.connected:
                        messages += await on_counts(update)
                else:
                    messages = await on_events(update)
            except NaqException:  # NATS went away while the page's own read ran
                messages = [_status(request, False)]
            for name, html in messages:
                yield sse_message(name, html)
    finally:
        await hub.close(page, job_page=job_page)


def _response(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _activity(request: Request, events: list[Event]) -> list[Message]:
    """An ``activity`` row per job event (oldest first: each goes on top), and a ``failure``
    row for each failure among them."""
    messages: list[Message] = []
    for event in events:
        if event.job_id is None:
            continue
        row = render_text(request, "fragments/event_row.html", event=event)
        messages.append(("activity", row))
        if event.kind in views.FAILURE_KINDS:
            messages.append(("failure", row))
    return messages


@router.get("/status")
async def status_stream(request: Request) -> StreamingResponse:
    """Only the connection state (the pages without live counts)."""
    return _response(_stream(request))


@router.get("/overview")
async def overview_stream(request: Request) -> StreamingResponse:
    """The overview's live parts: queue and worker counts, the throughput plot, activity."""
    samples: deque[float] = deque(maxlen=PLOT_SAMPLES)

    async def counts(update: Counts) -> list[Message]:
        queues = update.queues
        samples.append(sum(q.completed_last_minute + q.failed_last_minute for q in queues) / 60)
        return [
            ("queues", render_text(request, "fragments/queues_table.html", queues=queues)),
            (
                "workers",
                render_text(request, "fragments/workers_table.html", workers=update.workers),
            ),
            ("plot", render_text(request, "fragments/plot.html", samples=list(samples))),
        ]

    async def events(update: Events) -> list[Message]:
        return _activity(request, update.recent)

    return _response(_stream(request, counts, events))


@router.get("/queues/{name}")
async def queue_stream(request: Request, name: str) -> StreamingResponse:
    """A queue page's live parts: its state line and the jobs of its events."""
    validate_queue_name(name)

    async def counts(update: Counts) -> list[Message]:
        info = next((q for q in update.queues if q.name == name), None)
        html = render_text(request, "fragments/queue_state.html", name=name, info=info)
        return [("state", html)]

    async def events(update: Events) -> list[Message]:
        return _activity(request, update.by_queue.get(name, []))

    return _response(_stream(request, counts, events))


@router.get("/jobs/{job_id}")
async def job_stream(request: Request, job_id: str) -> StreamingResponse:
    """A job page's live part: its status, progress and attempts, refreshed at each refresh
    of the counts and whenever it had an event."""
    backend = backend_of(request)

    async def refresh(update: Counts | Events) -> list[Message]:
        if isinstance(update, Events) and job_id not in update.job_ids:
            return []
        view = await views.job_view(backend, job_id)
        return [("job", render_text(request, "fragments/job_live.html", view=view))]

    return _response(_stream(request, refresh, refresh, job_page=True))
