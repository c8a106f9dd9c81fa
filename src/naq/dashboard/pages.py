"""The dashboard's HTML pages (server-rendered, live parts over :mod:`.live`), its actions
(:mod:`.actions`) and its static files; ``router`` holds all of them (``create_app``
includes it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from ..errors import ConfigurationError, JobNotFoundError, NaqConnectionError, NaqException
from ..settings import validate_queue_name
from . import actions, live, views
from .rendering import STATIC_DIR, backend_of, render

router = APIRouter(include_in_schema=False)
router.include_router(actions.router)
router.include_router(live.router)

#: The static files served (only these names).
STATIC_FILES = {
    "htmx.min.js": "text/javascript",
    "htmx-sse.min.js": "text/javascript",
    "naq.js": "text/javascript",
    "naq.css": "text/css",
}

Loader = Callable[[], Awaitable[dict[str, Any]]]


async def _page(request: Request, template: str, load: Loader) -> HTMLResponse:
    """``template`` with what ``load`` reads; a clear error page when it cannot."""
    try:
        context = await load()
    except JobNotFoundError as exc:
        return render(request, "error.html", 404, title="Not found", message=str(exc))
    except ConfigurationError as exc:
        return render(request, "error.html", 400, title="Bad request", message=str(exc))
    except NaqConnectionError as exc:
        return render(request, "error.html", 503, title="NATS unreachable", message=str(exc))
    except NaqException as exc:
        return render(request, "error.html", 500, title="Error", message=str(exc))
    context.setdefault("live_url", "/live/status")
    return render(request, template, **context)


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    """A file shipped in the package's ``static/`` (no CDN: the pages work offline)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(404)
    return FileResponse(STATIC_DIR / name, media_type=media_type)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> HTMLResponse:
    """Queues with depth and throughput, workers, recent failures, the throughput plot."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        workers = await backend.workers()
        return {
            "page": "overview",
            "live_url": "/live/overview",
            "queues": await backend.queues(),
            "workers": workers,
            "failures": await views.recent_events(backend, kinds=views.FAILURE_KINDS),
            "activity": await views.recent_events(backend, last=50, keep=15),
            "samples": [],
        }

    return await _page(request, "overview.html", load)


@router.get("/queues/{name}", response_class=HTMLResponse)
async def queue_page(request: Request, name: str) -> HTMLResponse:
    """One queue: counts, pause/resume, waiting, running and recent jobs."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        validate_queue_name(name)
        queues = {q.name: q for q in await backend.queues()}
        workers = [w for w in await backend.workers() if name in w.queues]
        running = {job for w in workers for job in w.running_jobs}
        return {
            "page": "queues",
            "live_url": f"/live/queues/{quote(name)}",
            "name": name,
            "info": queues.get(name),
            "workers": workers,
            "waiting": await views.waiting_jobs(backend, name),
            "running": running,
            "recent": await views.recent_events(backend, queue=name, last=200, keep=25),
        }

    return await _page(request, "queue.html", load)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str) -> HTMLResponse:
    """One job: function, arguments, status history, attempts, result, progress and its
    dependencies and dependants."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        return {
            "page": "jobs",
            "live_url": f"/live/jobs/{quote(job_id)}",
            "view": await views.job_view(backend, job_id),
        }

    return await _page(request, "job.html", load)


@router.get("/search")
async def search(request: Request, job_id: str = "") -> Response:
    """The header's search box: straight to the job's page."""
    job_id = job_id.strip()
    if not job_id:
        return RedirectResponse("/", status_code=303)
    return RedirectResponse(request.url_for("job_page", job_id=job_id), status_code=303)


@router.get("/workers", response_class=HTMLResponse)
async def workers_page(request: Request) -> HTMLResponse:
    """The live workers."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        return {"page": "workers", "live_url": "/live/overview", "workers": await backend.workers()}

    return await _page(request, "workers.html", load)


@router.get("/schedules", response_class=HTMLResponse)
async def schedules_page(request: Request) -> HTMLResponse:
    """Schedules and waiting ``enqueue_at`` jobs, with pause, resume, cancel and run now."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        return {"page": "schedules", "schedules": await backend.schedules()}

    return await _page(request, "schedules.html", load)


@router.get("/limits", response_class=HTMLResponse)
async def limits_page(request: Request) -> HTMLResponse:
    """Shared limits, the slots held now, and a form to change them."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        return {"page": "limits", "limits": await backend.limits()}

    return await _page(request, "limits.html", load)


@router.get("/dlq", response_class=HTMLResponse)
async def dlq_page(request: Request) -> HTMLResponse:
    """Dead letters with requeue, delete and requeue all."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        return {
            "page": "dlq",
            "entries": await backend.dead_letters(None, actions.DEAD_LETTERS_SHOWN),
        }

    return await _page(request, "dlq.html", load)


@router.get("/dlq/{entry_id}", response_class=HTMLResponse)
async def dead_letter_page(request: Request, entry_id: int) -> HTMLResponse:
    """One dead letter, raw (headers and payload)."""
    backend = backend_of(request)

    async def load() -> dict[str, Any]:
        raw = await views.dead_letter_raw(backend, entry_id)
        return {"page": "dlq", "entry_id": entry_id, "raw": raw}

    return await _page(request, "dead_letter.html", load)
