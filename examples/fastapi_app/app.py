"""A FastAPI app that hands slow work to naq: one ``naq.Queue`` for the app's lifetime,
opened and closed by its lifespan.

    NAQ_NATS_URL=nats://127.0.0.1:4222 uvicorn app:app      # serve it for real

``POST /reports`` enqueues a report and answers 202 with its job id at once;
``GET /reports/{job_id}?wait=S`` answers its status and, once completed, its result
(waiting up to ``S`` seconds for it to finish).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import tasks
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import naq

QUEUE = "fastapi-example"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One queue (one NATS connection, from NAQ_NATS_URL) for every request."""
    async with naq.Queue(QUEUE) as queue:
        app.state.queue = queue
        yield


app = FastAPI(title="naq FastAPI example", lifespan=lifespan)


def get_queue(request: Request) -> naq.Queue:
    """The app's queue (a dependency)."""
    queue: naq.Queue = request.app.state.queue
    return queue


QueueDep = Annotated[naq.Queue, Depends(get_queue)]


class ReportRequest(BaseModel):
    """What ``POST /reports`` takes."""

    customer: str
    months: int = 3


@app.post("/reports", status_code=202)
async def create_report(body: ReportRequest, queue: QueueDep) -> dict[str, str]:
    """Enqueue a report; answers at once with its job id."""
    job = await queue.enqueue(tasks.build_report, body.customer, body.months, max_retries=2)
    return {"job_id": job.job_id}


@app.get("/reports/{job_id}")
async def read_report(job_id: str, queue: QueueDep, wait: float = 0) -> dict[str, Any]:
    """The report's status, and its result or error once finished."""
    try:
        if wait > 0:  # wait for the outcome (pushed by the server), at most `wait` s
            result = await queue.fetch_job_result(job_id, timeout=min(wait, 30))
            return {"job_id": job_id, "status": "completed", "result": result}
        status = await queue.get_job_status(job_id)
        if status == naq.JobStatus.COMPLETED:
            result = await queue.fetch_job_result(job_id)
            return {"job_id": job_id, "status": status.value, "result": result}
        return {"job_id": job_id, "status": status.value}
    except naq.JobExecutionError as error:  # failed (or cancelled) for good
        return {"job_id": job_id, "status": "failed", "error": str(error)}
    except naq.JobNotFoundError:
        raise HTTPException(status_code=404, detail=f"no job {job_id}") from None
