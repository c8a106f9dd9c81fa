"""The dashboard pages' actions (htmx POSTs; the CSRF check is the auth middleware's): each
answers with the HTML fragment that replaces what it changed, or an error line saying
what went wrong."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from ..errors import NaqException
from ..settings import validate_queue_name
from . import views
from .rendering import backend_of, render

router = APIRouter(include_in_schema=False)

#: Dead letters the page lists (the oldest).
DEAD_LETTERS_SHOWN = 200

Action = Callable[[], Awaitable[HTMLResponse]]


async def _act(request: Request, action: Action) -> HTMLResponse:
    """Run ``action``; a naq error becomes an error line in the page (status 200, so htmx
    swaps it in where the result would have gone)."""
    try:
        return await action()
    except (NaqException, ValueError) as exc:
        return render(request, "fragments/action_error.html", message=str(exc))


async def _queue_state(request: Request, name: str) -> HTMLResponse:
    queues = {q.name: q for q in await backend_of(request).queues()}
    return render(request, "fragments/queue_state.html", name=name, info=queues.get(name))


@router.post("/queues/{name}/pause", response_class=HTMLResponse)
async def pause_queue(request: Request, name: str) -> HTMLResponse:
    """Pause a queue; answers its state line."""

    async def action() -> HTMLResponse:
        await backend_of(request).pause_queue(validate_queue_name(name))
        return await _queue_state(request, name)

    return await _act(request, action)


@router.post("/queues/{name}/resume", response_class=HTMLResponse)
async def resume_queue(request: Request, name: str) -> HTMLResponse:
    """Resume a queue; answers its state line."""

    async def action() -> HTMLResponse:
        await backend_of(request).resume_queue(validate_queue_name(name))
        return await _queue_state(request, name)

    return await _act(request, action)


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
async def cancel_job(request: Request, job_id: str) -> HTMLResponse:
    """Cancel a job; answers a line saying what happened."""

    async def action() -> HTMLResponse:
        cancelled = await backend_of(request).cancel_job(job_id)
        message = "cancelled" if cancelled else "already finished: nothing changed"
        return render(request, "fragments/action_done.html", message=message)

    return await _act(request, action)


@router.post("/dlq/requeue-all", response_class=HTMLResponse)
async def requeue_all(request: Request) -> HTMLResponse:
    """Requeue every dead letter; answers the list as it is now."""

    async def action() -> HTMLResponse:
        backend = backend_of(request)
        outcome = await backend.requeue_dead_letters(None)
        return render(
            request,
            "fragments/dlq_list.html",
            entries=await backend.dead_letters(None, DEAD_LETTERS_SHOWN),
            notice=f"requeued {len(outcome.requeued)}, left {len(outcome.skipped)} in place",
        )

    return await _act(request, action)


@router.post("/dlq/{entry_id}/requeue", response_class=HTMLResponse)
async def requeue_dead_letter(request: Request, entry_id: int) -> HTMLResponse:
    """Requeue one dead letter; answers its row, now saying so."""

    async def action() -> HTMLResponse:
        done = await backend_of(request).requeue_dead_letter(entry_id)
        return render(request, "fragments/dlq_done.html", entry_id=entry_id, job_id=done.job_id)

    return await _act(request, action)


@router.post("/dlq/{entry_id}/delete", response_class=HTMLResponse)
async def delete_dead_letter(request: Request, entry_id: int) -> HTMLResponse:
    """Delete one dead letter; answers its row, now saying so."""

    async def action() -> HTMLResponse:
        await backend_of(request).delete_dead_letter(entry_id)
        return render(
            request, "fragments/dlq_done.html", entry_id=entry_id, deleted=True, job_id=None
        )

    return await _act(request, action)


@router.post("/schedules/{schedule_id}/{verb}", response_class=HTMLResponse)
async def schedule_action(request: Request, schedule_id: str, verb: str) -> HTMLResponse:
    """Pause, resume, cancel or run now (``verb``) a schedule; answers the table."""

    async def action() -> HTMLResponse:
        backend = backend_of(request)
        await views.schedule_action(backend, schedule_id, verb)
        return render(
            request,
            "fragments/schedules_table.html",
            schedules=await backend.schedules(),
            notice=f"{verb}: {schedule_id}",
        )

    return await _act(request, action)


def _whole_number(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"concurrency must be a whole number, got {text!r}") from None


@router.post("/limits", response_class=HTMLResponse)
async def set_limit(
    request: Request,
    name: str = Form(...),
    concurrency: str = Form(""),
    rate: str = Form(""),
) -> HTMLResponse:
    """Define or change a limit; answers the table."""

    async def action() -> HTMLResponse:
        backend = backend_of(request)
        spec = await backend.set_limit(
            name.strip(), _whole_number(concurrency), rate.strip() or None
        )
        return render(
            request,
            "fragments/limits_table.html",
            limits=await backend.limits(),
            notice=f"limit {spec.name} set",
        )

    return await _act(request, action)


@router.post("/limits/delete", response_class=HTMLResponse)
async def delete_limit(request: Request, name: str = Form(...)) -> HTMLResponse:
    """Delete a limit definition; answers the table."""

    async def action() -> HTMLResponse:
        backend = backend_of(request)
        await backend.delete_limit(name)
        return render(
            request,
            "fragments/limits_table.html",
            limits=await backend.limits(),
            notice=f"limit {name} deleted",
        )

    return await _act(request, action)
