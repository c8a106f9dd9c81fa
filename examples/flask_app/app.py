"""A Flask app that hands work to naq from plain sync views, through one ``naq.SyncClient``.

    NAQ_NATS_URL=nats://127.0.0.1:4222 flask --app app run      # serve it for real

``POST /thumbnails`` enqueues a thumbnail and answers 202 with its job id;
``GET /thumbnails/<job_id>`` answers its status, and its result once completed
(``?wait=S`` waits up to ``S`` seconds for it).
"""

from __future__ import annotations

from typing import Any

import tasks
from flask import Flask, abort, request

import naq

QUEUE = "flask-example"


def create_app(nats_url: str | None = None) -> Flask:
    """The app, with one ``SyncClient`` (one connection, NAQ_NATS_URL by default)."""
    app = Flask(__name__)
    client = naq.SyncClient(nats_url=nats_url, queue_name=QUEUE)  # closed at exit
    app.extensions["naq"] = client

    @app.post("/thumbnails")
    def create_thumbnail() -> tuple[dict[str, str], int]:
        body = request.get_json(force=True)
        job = client.enqueue(tasks.make_thumbnail, body["image"], int(body.get("size", 128)))
        return {"job_id": job.job_id}, 202

    @app.get("/thumbnails/<job_id>")
    def read_thumbnail(job_id: str) -> dict[str, Any]:
        wait = request.args.get("wait", default=0.0, type=float)
        try:
            if wait > 0:
                result = client.fetch_job_result(job_id, timeout=min(wait, 30))
                return {"job_id": job_id, "status": "completed", "result": result}
            status = client.get_job_status(job_id)
            if status == naq.JobStatus.COMPLETED:
                return {
                    "job_id": job_id,
                    "status": status.value,
                    "result": client.fetch_job_result(job_id),
                }
            return {"job_id": job_id, "status": status.value}
        except naq.JobExecutionError as error:
            return {"job_id": job_id, "status": "failed", "error": str(error)}
        except naq.JobNotFoundError:
            abort(404, description=f"no job {job_id}")

    return app
