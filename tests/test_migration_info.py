"""Programs written for the original naq read naq's listings and lookups as it let them:
worker, job, queue and schedule info as dicts with the original's keys (``w["status"]`` is
``idle``/``busy``, times epoch seconds), ``to_dict()`` for JSON, ``schedule_sync(...).job_id``
and ``Job.fetch_result_sync(job_id, nats_url=...)``. Run against a real nats-server and an
in-process worker, the way the original's README and examples call them."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests import jobs
from tests.worker_procs import wait_until

import naq
from conftest import WAIT
from naq import Job
from naq.errors import JobNotFoundError
from naq.info import WorkerInfo

WorkerThread = Callable[..., AbstractContextManager[naq.Worker]]


def _queue() -> str:
    return f"mig-{uuid.uuid4().hex[:8]}"


def _mine(worker: naq.Worker, nats_url: str) -> dict[str, Any] | None:
    """The original's loop: find our worker's dict among ``list_workers_sync()``."""
    for w in naq.list_workers_sync(nats_url=nats_url):
        if w["worker_id"] == worker.worker_id:
            return dict(w)
    return None


@pytest.fixture
def idle_worker(nats_url: str, worker_thread: WorkerThread) -> Iterator[tuple[naq.Worker, str]]:
    queue = _queue()
    with worker_thread([queue], nats_url, heartbeat_interval=0.2) as worker:
        wait_until(
            lambda: (
                worker.worker_id in [w.worker_id for w in naq.list_workers_sync(nats_url=nats_url)]
            ),
            WAIT,
            "worker listed",
        )
        yield worker, queue


def test_list_workers_sync_reads_as_the_original_dicts(
    nats_url: str, idle_worker: tuple[naq.Worker, str]
) -> None:
    worker, queue = idle_worker
    lines = []
    for w in naq.list_workers_sync(nats_url=nats_url):
        lines.append(f"{w['worker_id']} {w['status']} {w['hostname']} {w['pid']}")
    assert f"{worker.worker_id} idle " in "\n".join(lines) + "\n"

    (info,) = [
        w for w in naq.list_workers_sync(nats_url=nats_url) if w["worker_id"] == worker.worker_id
    ]
    assert info["pid"] == os.getpid() and info["queues"] == [queue]
    assert info.get("job_id") is None and info.get("current_job_id") is None
    # times as the original kept them: epoch seconds
    assert isinstance(info["timestamp"], float)
    assert info["timestamp"] == info["last_heartbeat_utc"] == info["last_heartbeat"]
    heartbeat = datetime.fromtimestamp(info["last_heartbeat"], UTC)
    assert abs(heartbeat - datetime.now(UTC)) < timedelta(seconds=30)
    # attributes stay typed: naq's own status beside the original's
    assert info.status == "running" and info.state == "idle"
    assert info.last_heartbeat == heartbeat

    as_dict = info.to_dict()
    assert set(as_dict) == set(info.keys()) == set(info) and len(as_dict) == len(info)
    assert {"worker_id", "status", "hostname", "pid", "timestamp", "state"} <= set(as_dict)
    assert json.loads(json.dumps(as_dict))["status"] == "idle"


def test_a_worker_running_a_job_is_busy_then_idle_again(
    nats_url: str, idle_worker: tuple[naq.Worker, str]
) -> None:
    worker, queue = idle_worker
    job = naq.enqueue_sync(jobs.sleep_sync, 1.5, queue_name=queue, nats_url=nats_url)

    def busy() -> dict[str, Any] | None:
        w = _mine(worker, nats_url)
        return w if w and w["status"] == "busy" else None

    seen = wait_until(busy, WAIT, "worker reported busy")
    assert seen is not None
    assert seen["job_id"] == seen["current_job_id"] == job.job_id
    assert seen["state"] == "busy"
    workers = naq.list_workers_sync(nats_url=nats_url)
    assert worker.worker_id in [w["worker_id"] for w in workers if w["status"] == "busy"]
    # the original's examples count busy workers this way
    assert len([w for w in workers if w.get("status", "").lower() == "busy"]) >= 1

    wait_until(
        lambda: (_mine(worker, nats_url) or {}).get("status") == "idle",
        WAIT,
        "worker idle again",
    )


def test_a_key_neither_naq_nor_the_original_has_raises_key_error_naming_it() -> None:
    now = datetime.now(UTC)
    info = WorkerInfo(
        worker_id="w-1",
        hostname="h",
        pid=1,
        queues=["q"],
        concurrency=1,
        running_jobs=[],
        jobs_done=0,
        jobs_failed=0,
        started_at=now,
        last_heartbeat=now,
        status="stopping",
    )
    with pytest.raises(
        KeyError,
        match=r"'worker_name' is not a key of WorkerInfo; valid keys: "
        r"worker_id, hostname, .*, status, .*timestamp",
    ):
        info["worker_name"]
    assert "worker_name" not in info
    assert info.get("worker_name", "n/a") == "n/a"
    assert info["status"] == info.state == "stopping"


def test_job_lookups_and_fetch_result_sync_as_the_original(
    nats_url: str, idle_worker: tuple[naq.Worker, str]
) -> None:
    _, queue = idle_worker
    job = naq.enqueue_sync(jobs.add, 2, 3, queue_name=queue, nats_url=nats_url)
    wait_until(
        lambda: naq.get_job_status_sync(job.job_id, nats_url=nats_url) == "completed",
        WAIT,
        "job completed",
    )
    status = naq.get_job_status_sync(job.job_id, nats_url=nats_url)
    assert (
        status == "completed" and status in ("completed", "failed") and str(status) == "completed"
    )

    assert Job.fetch_result_sync(job.job_id, nats_url=nats_url) == 5
    assert Job.fetch_result_sync(job.job_id, nats_url) == 5
    with pytest.raises(JobNotFoundError):
        Job.fetch_result_sync(uuid.uuid4().hex, nats_url=nats_url)

    info = naq.get_job_info_sync(job.job_id, nats_url=nats_url)
    assert info["job_id"] == job.job_id and info["queue_name"] == queue
    assert info["status"] == "completed" and info["error"] is None
    assert info["traceback"] is None
    assert isinstance(info["start_time"], float) and isinstance(info["finish_time"], float)
    assert info["start_time"] == info["started_at"] <= info["finish_time"] == info["finished_at"]
    assert info["duration_ms"] == pytest.approx(
        (info["finish_time"] - info["start_time"]) * 1000, abs=0.01
    )
    assert info["attempts"][0]["worker_id"] == info["worker_id"]
    data = json.loads(json.dumps(info.to_dict()))
    assert data["status"] == "completed" and data["function"].endswith("add")
    assert info.started_at is not None and info.started_at.tzinfo is not None  # typed


def test_queue_info_reads_as_a_dict(nats_url: str, idle_worker: tuple[naq.Worker, str]) -> None:
    _, queue = idle_worker
    naq.enqueue_at_sync(
        datetime.now(UTC) + timedelta(hours=1),
        jobs.add,
        1,
        1,
        queue_name=queue,
        nats_url=nats_url,
    )
    mine = [q for q in naq.list_queues_sync(nats_url=nats_url) if q["name"] == queue]
    assert len(mine) == 1
    data = json.loads(json.dumps(mine[0].to_dict()))
    assert data["name"] == queue and data["waiting"] == mine[0].waiting


def test_schedule_sync_returns_job_id_and_schedules_read_as_dicts(nats_url: str) -> None:
    queue = _queue()
    made = naq.schedule_sync(jobs.add, 1, 2, interval=3600, queue_name=queue, nats_url=nats_url)
    assert made.job_id == made.schedule_id
    at = datetime.now(UTC) + timedelta(hours=2)
    one_off = naq.enqueue_at_sync(at, jobs.add, 3, 4, queue_name=queue, nats_url=nats_url)

    listed = {s["job_id"]: s for s in naq.list_schedules_sync(queue_name=queue, nats_url=nats_url)}
    assert set(listed) == {made.job_id, one_off.job_id}
    recurring = listed[made.job_id].to_dict()
    assert recurring["interval_seconds"] == recurring["interval"] == 3600
    assert isinstance(recurring["next_run_utc"], float)
    assert recurring["scheduled_timestamp_utc"] == recurring["next_run_utc"]
    assert recurring["last_enqueued_utc"] is None and recurring["status"] == "active"
    json.dumps(recurring)
    assert listed[one_off.job_id]["next_run_utc"] == pytest.approx(at.timestamp(), abs=1)

    assert naq.cancel_scheduled_job_sync(made.job_id, nats_url=nats_url)
    assert naq.cancel_scheduled_job_sync(one_off.job_id, nats_url=nats_url)
