"""Runnable example: a Flask app (``app.py``) that enqueues jobs with ``naq.SyncClient``.

    python examples/flask_app/main.py            # starts its own nats-server
    NAQ_NATS_URL=nats://127.0.0.1:4222 python examples/flask_app/main.py

It starts ``naq worker flask-example`` as a subprocess, then drives the app with Flask's
test client: a thumbnail that completes (read once finished, with ``?wait=``), one that
fails, and an unknown job id.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from app import QUEUE, create_app

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
    app = create_app()
    with worker_process(QUEUE):
        client = app.test_client()
        created = client.post("/thumbnails", json={"image": "cat.jpg", "size": 64})
        job_id = (created.json or {})["job_id"]
        print(f"POST /thumbnails -> {created.status_code} job {job_id}")
        done = client.get(f"/thumbnails/{job_id}?wait=10")
        print(f"GET /thumbnails/<id>?wait=10 -> {done.status_code} {done.json}")

        bad = client.post("/thumbnails", json={"image": "cat.jpg", "size": 0})
        failed = client.get(f"/thumbnails/{(bad.json or {})['job_id']}?wait=10")
        print(f"GET a failed thumbnail -> {failed.status_code} {(failed.json or {})['error']}")

        missing = client.get("/thumbnails/no-such-job")
        print(f"GET /thumbnails/no-such-job -> {missing.status_code}")
        app.extensions["naq"].close()
    return bool(
        created.status_code == 202
        and (done.json or {}).get("result") == "cat-64px.jpg"
        and (failed.json or {}).get("status") == "failed"
        and missing.status_code == 404
    )


def main() -> int:
    """Run the example against NAQ_NATS_URL, or a nats-server of its own."""
    with contextlib.ExitStack() as stack:
        if not os.environ.get("NAQ_NATS_URL"):
            os.environ["NAQ_NATS_URL"] = stack.enter_context(EmbeddedServer()).url
        print(f"naq Flask example: NATS at {os.environ['NAQ_NATS_URL']}")
        ok = run()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
