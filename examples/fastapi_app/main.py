"""Runnable example: a FastAPI app (``app.py``) that enqueues jobs and serves their results.

    python examples/fastapi_app/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/fastapi_app/main.py

It starts ``naq worker fastapi-example`` as a subprocess, then drives the app in this process
with FastAPI's ``TestClient`` (which runs its lifespan): one report that completes, one that
fails, and an unknown job id.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from app import QUEUE, app
from fastapi.testclient import TestClient

from naq.server import EmbeddedServer

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def worker_process(queue: str) -> Iterator[None]:
    """``naq worker QUEUE`` in a subprocess (NAQ_NATS_URL from the environment)."""
    command = [sys.executable, "-m", "naq", "worker", queue, "--module-path", str(HERE)]
    worker = subprocess.Popen(command)
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def run() -> bool:
    """Drive the app; True if every answer is the one promised."""
    with worker_process(QUEUE), TestClient(app) as client:
        created = client.post("/reports", json={"customer": "acme", "months": 6})
        job_id = created.json()["job_id"]
        print(f"POST /reports -> {created.status_code} job {job_id}")
        done = client.get(f"/reports/{job_id}", params={"wait": 10})
        print(f"GET /reports/{{id}}?wait=10 -> {done.status_code} {done.json()}")

        bad = client.post("/reports", json={"customer": "acme", "months": 0})
        failed = client.get(f"/reports/{bad.json()['job_id']}", params={"wait": 10})
        print(f"GET a failed report -> {failed.status_code} {failed.json()['error']}")

        missing = client.get("/reports/no-such-job")
        print(f"GET /reports/no-such-job -> {missing.status_code} {missing.json()}")
    return bool(
        created.status_code == 202
        and done.json()["result"] == {"customer": "acme", "months": 6, "total": 600}
        and failed.json()["status"] == "failed"
        and missing.status_code == 404
    )


def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        if not os.environ.get("NAQ_NATS_URL"):
            os.environ["NAQ_NATS_URL"] = stack.enter_context(EmbeddedServer()).url
        print(f"naq FastAPI example: NATS at {os.environ['NAQ_NATS_URL']}")
        ok = run()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
