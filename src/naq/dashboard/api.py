"""The dashboard's JSON API under ``/api``: everything the pages show and do, described by
``/api/openapi.json``. Reads are GET; actions are POST, PUT or DELETE (never GET).

naq's errors become HTTP answers ``{"detail": "<naq's message>"}``: an unknown job,
schedule, dead letter, queue or limit 404; a bad name, id or value 422; NATS out of reach
503 (at once while the dashboard is disconnected). Authentication and the cross-site
check are middleware (:mod:`.auth`), not this module's business."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ..errors import (
    ConfigurationError,
    JobNotFoundError,
    NaqConnectionError,
    NaqException,
    SerializationError,
)
from ..info import QueueInfo, WorkerInfo
from ..scheduling import Schedule
from .backend import Backend
from .models import (
    BulkRequeued,
    Cancelled,
    DeadLetterSummary,
    DeadLetterView,
    Done,
    Health,
    JobDetail,
    LimitChange,
    LimitView,
    Overview,
    Problem,
    QueueDetail,
    Requeued,
    SearchHit,
)

#: Largest dead-letter id (a stream sequence) and listing size the API accepts.
MAX_ENTRY_ID = 2**63 - 1
MAX_LIST = 1000


def status_of(error: NaqException) -> int:
    """The HTTP status a naq error answers with."""
    if isinstance(error, JobNotFoundError):
        return 404
    if isinstance(error, NaqConnectionError):
        return 503
    if isinstance(error, ConfigurationError | SerializationError):
        return 422
    return 400


class NaqErrorRoute(APIRoute):
    """A route whose naq errors answer as :func:`status_of` says, and which answers 503 at
    once while NATS is out of reach (but ``/api/health``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        needs_nats = self.path != "/api/health"

        async def handle(request: Request) -> Response:
            try:
                if needs_nats and not _backend(request).connected:
                    raise NaqConnectionError("NATS is out of reach; the dashboard reconnects")
                return await handler(request)
            except NaqException as exc:
                return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

        return handle


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "not found"},
    503: {"model": Problem, "description": "NATS is out of reach"},
}
router = APIRouter(prefix="/api", route_class=NaqErrorRoute, responses=_ERRORS)

EntryId = Annotated[int, Path(ge=1, le=MAX_ENTRY_ID, description="the dead letter's id")]
QueueFilter = Annotated[str | None, Query(description="only this queue")]


def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


# -- reads --------------------------------------------------------------------------------
@router.get("/health")
async def health(request: Request) -> Health:
    """Whether the dashboard reaches NATS now."""
    return Health(connected=_backend(request).connected)


@router.get("/overview")
async def overview(request: Request) -> Overview:
    """Queues, workers, the newest dead letters and each queue's throughput now."""
    return await _backend(request).overview()


@router.get("/queues")
async def queues(request: Request) -> list[QueueInfo]:
    """Every queue with its counts."""
    return await _backend(request).queues()


@router.get("/queues/{name}")
async def queue_detail(request: Request, name: str) -> QueueDetail:
    """One queue: its counts, the jobs running now and its recent jobs (events on)."""
    return await _backend(request).queue_detail(name)


@router.get("/jobs/{job_id}")
async def job_detail(request: Request, job_id: str) -> JobDetail:
    """One job: status, attempts with tracebacks, call, result, progress, dependencies."""
    return await _backend(request).job_detail(job_id)


@router.get("/workers")
async def workers(request: Request) -> list[WorkerInfo]:
    """The live workers."""
    return await _backend(request).workers()


@router.get("/schedules")
async def schedules(request: Request) -> list[Schedule]:
    """Recurring schedules and waiting one-off jobs, soonest first."""
    return await _backend(request).schedules()


@router.get("/limits")
async def limits(request: Request) -> list[LimitView]:
    """Every limit definition and its use now."""
    return await _backend(request).limits()


@router.get("/dlq")
async def dead_letters(
    request: Request,
    queue: QueueFilter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> list[DeadLetterSummary]:
    """Dead letters, oldest first (of ``queue``, or all)."""
    return await _backend(request).dead_letters(queue, limit)


@router.get("/dlq/{entry_id}")
async def dead_letter(request: Request, entry_id: EntryId) -> DeadLetterView:
    """One dead letter, raw: reason, kind, headers, payload (text, or base64)."""
    return await _backend(request).dead_letter(entry_id)


@router.get("/search")
async def search(request: Request, q: Annotated[str, Query(max_length=200)]) -> SearchHit:
    """Find a job by its exact id: where to go (404 if there is no such job)."""
    job_id = q.strip()
    info = await _backend(request).job(job_id)
    return SearchHit(
        job_id=info.job_id, api=f"/api/jobs/{info.job_id}", page=f"/jobs/{info.job_id}"
    )


# -- actions ------------------------------------------------------------------------------
@router.post("/queues/{name}/pause")
async def pause_queue(request: Request, name: str) -> Done:
    """Pause a queue: no worker starts its jobs until resumed (running ones finish)."""
    await _backend(request).pause_queue(name)
    return Done(detail=f"queue {name} paused")


@router.post("/queues/{name}/resume")
async def resume_queue(request: Request, name: str) -> Done:
    """Resume a paused queue."""
    await _backend(request).resume_queue(name)
    return Done(detail=f"queue {name} resumed")


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str) -> Cancelled:
    """Cancel a job wherever it is (``cancelled`` False: it had finished already)."""
    return Cancelled(job_id=job_id, cancelled=await _backend(request).cancel_job(job_id))


@router.post("/dlq/requeue")
async def requeue_dead_letters(request: Request, queue: QueueFilter = None) -> BulkRequeued:
    """Requeue every dead letter (of ``queue``, or of all queues)."""
    return await _backend(request).requeue_dead_letters(queue)


@router.post("/dlq/{entry_id}/requeue")
async def requeue_dead_letter(request: Request, entry_id: EntryId) -> Requeued:
    """Publish a dead letter's job again (same job id) and remove the entry."""
    return await _backend(request).requeue_dead_letter(entry_id)


@router.delete("/dlq/{entry_id}")
async def delete_dead_letter(request: Request, entry_id: EntryId) -> Done:
    """Remove one dead letter."""
    await _backend(request).delete_dead_letter(entry_id)
    return Done(detail=f"dead letter {entry_id} deleted")


@router.post("/schedules/{schedule_id}/pause")
async def pause_schedule(request: Request, schedule_id: str) -> Schedule:
    """Pause a schedule or a waiting one-off job."""
    return await _backend(request).pause_schedule(schedule_id)


@router.post("/schedules/{schedule_id}/resume")
async def resume_schedule(request: Request, schedule_id: str) -> Schedule:
    """Resume a paused schedule or one-off job."""
    return await _backend(request).resume_schedule(schedule_id)


@router.post("/schedules/{schedule_id}/run")
async def run_schedule(request: Request, schedule_id: str) -> Schedule:
    """Run a schedule (or one-off job) now: its next run moves to now."""
    return await _backend(request).run_schedule_now(schedule_id)


@router.delete("/schedules/{schedule_id}")
async def cancel_schedule(request: Request, schedule_id: str) -> Done:
    """Cancel a schedule or a waiting one-off job."""
    await _backend(request).cancel_schedule(schedule_id)
    return Done(detail=f"schedule {schedule_id} cancelled")


@router.put("/limits/{name}")
async def set_limit(request: Request, name: str, change: LimitChange) -> LimitView:
    """Define (or redefine) a limit: a concurrency, a rate (``"100/s"``) or both."""
    return await _backend(request).set_limit(name, change.concurrency, change.rate)


@router.delete("/limits/{name}")
async def delete_limit(request: Request, name: str) -> Done:
    """Delete a limit: jobs taking it run unlimited by it."""
    await _backend(request).delete_limit(name)
    return Done(detail=f"limit {name} deleted")
