"""The blocking API across ``os.fork()`` (gunicorn/uwsgi pre-fork, multiprocessing's fork):
a child inherits the parent's loop object but not its thread, and must start its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import jobs

import naq
from conftest import WAIT
from naq import JobStatus

ROOT = Path(__file__).resolve().parents[1]
#: How long a child may take for a handful of calls before it counts as hung.
CHILD_BOUND = 15.0


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def _fork() -> int:
    # Forking while naq's loop thread runs is what this module tests; Python 3.12+ warns
    # about forking a multi-threaded process (an error under this suite's filters).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def run_in_child(work: Callable[[], Any], bound: float = CHILD_BOUND) -> Any:
    """Run ``work`` in a forked child and return what it returned (JSON round trip).

    The child reports through a pipe and leaves with ``os._exit`` (no pytest teardown in
    the child). A child still running after ``bound`` seconds is killed: it hung."""
    read_fd, write_fd = os.pipe()
    pid = _fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                report = {"value": work()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                report = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_fd, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    started = time.monotonic()
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - started > bound:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the forked child hung: not finished within {bound} s")
            time.sleep(0.02)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0
    report = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in report, f"the child failed: {report['error']}"
    return report["value"]


def test_sync_helpers_work_in_a_forked_child(nats_url: str, queue: str, worker_thread: Any) -> None:
    with worker_thread([queue], nats_url) as worker:
        # the parent's loop thread, shared connection and a client's connection all exist
        job = naq.enqueue_sync(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
        assert naq.fetch_job_result_sync(job.job_id, timeout=WAIT, nats_url=nats_url) == 3
        assert naq.get_job_status_sync(job.job_id, nats_url=nats_url) == JobStatus.COMPLETED
        client = naq.SyncClient(nats_url=nats_url, queue_name=queue)
        client.connect()

        def child() -> dict[str, Any]:
            new = naq.enqueue_sync(jobs.add, 20, 22, queue_name=queue, nats_url=nats_url)
            with naq.SyncClient(nats_url=nats_url, queue_name=queue) as own:
                own_job = own.enqueue(jobs.add, 5, 5)
                own_result = own.fetch_job_result(own_job.job_id, timeout=WAIT)
            return {
                "status": naq.get_job_status_sync(job.job_id, nats_url=nats_url),
                "result": naq.fetch_job_result_sync(job.job_id, nats_url=nats_url),
                "new_result": naq.fetch_job_result_sync(
                    new.job_id, timeout=WAIT, nats_url=nats_url
                ),
                "new_id": new.job_id,
                "workers": [w.worker_id for w in naq.list_workers_sync(nats_url=nats_url)],
                "inherited_client": client.get_job_status(job.job_id),
                "own_client": own_result,
            }

        try:
            report = run_in_child(child)
        finally:
            client.close()

        assert report == {
            "status": "completed",
            "result": 3,
            "new_result": 42,
            "new_id": report["new_id"],
            "workers": report["workers"],
            "inherited_client": "completed",
            "own_client": 10,
        }
        assert worker.worker_id in report["workers"]
        # the parent's own loop and connections were not disturbed by the child
        assert naq.get_job_status_sync(report["new_id"], nats_url=nats_url) == "completed"
        later = naq.enqueue_sync(jobs.add, 2, 2, queue_name=queue, nats_url=nats_url)
        assert naq.fetch_job_result_sync(later.job_id, timeout=WAIT, nats_url=nats_url) == 4


def test_a_forked_child_can_fork_again(nats_url: str, queue: str) -> None:
    job = naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    assert naq.get_job_status_sync(job.job_id, nats_url=nats_url) == JobStatus.PENDING

    def grandchild() -> str:
        return naq.get_job_status_sync(job.job_id, nats_url=nats_url)

    def child() -> list[str]:
        first = naq.get_job_status_sync(job.job_id, nats_url=nats_url)
        return [first, run_in_child(grandchild)]

    assert run_in_child(child) == ["pending", "pending"]
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1


_EXITING_PARENT_AND_CHILD = """
import os, sys, warnings
import naq
from tests import jobs

url, queue = sys.argv[1:3]
warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python 3.12+)
client = naq.SyncClient(nats_url=url, queue_name=queue)  # never closed
job = client.enqueue(jobs.add, 1, 2)
print(client.get_job_status(job.job_id), naq.get_job_status_sync(job.job_id, nats_url=url))
sys.stdout.flush()
pid = os.fork()
if pid == 0:  # a child that leaves normally (atexit handlers run), its client left open
    other = naq.SyncClient(nats_url=url, queue_name=queue)
    other.enqueue(jobs.add, 3, 4)
    info = naq.get_job_info_sync(job.job_id, nats_url=url)
    print("child", client.get_job_status(job.job_id), info.queue_name == queue)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
print("parent", naq.get_job_status_sync(job.job_id, nats_url=url))
"""


def test_a_forked_child_and_its_parent_exit_quietly(nats_url: str, queue: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_EXITING_PARENT_AND_CHILD), nats_url, queue],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.split("\n") == [
        "pending pending",
        "child pending True",
        "child exit 0",
        "parent pending",
        "",
    ]
    assert done.stderr == "", done.stderr
    assert done.returncode == 0
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 2
