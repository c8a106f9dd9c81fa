"""The scheduling CLI (``naq scheduler``, ``naq list-scheduled``, ``naq job-control``) run as
real subprocesses, plus the blocking twins (``*_sync``, ``SyncClient``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests import sched_jobs

import naq

ROOT = Path(__file__).resolve().parent.parent
NAQ = [sys.executable, "-m", "naq"]


def naq_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env["COLUMNS"] = "300"  # wide enough for whole ids in tables
    return subprocess.run(
        [*NAQ, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    yield
    naq.run_sync(naq.close())


def test_list_scheduled_and_job_control(nats_url: str, queue: str) -> None:
    job = naq.enqueue_in_sync(
        timedelta(hours=1), sched_jobs.record, "cli", queue_name=queue, nats_url=nats_url
    )
    sched = naq.schedule_sync(
        sched_jobs.record,
        "cli",
        cron="0 7 * * mon-fri",
        timezone="Europe/Berlin",
        schedule_id=f"{queue}-weekday",
        queue_name=queue,
        nats_url=nats_url,
    )
    out = naq_cli("list-scheduled", "--json", "-u", nats_url, "--queue", queue)
    assert out.returncode == 0, out.stderr
    listed = {s["schedule_id"]: s for s in json.loads(out.stdout)}
    assert set(listed) == {job.job_id, sched.schedule_id}
    one_off, weekly = listed[job.job_id], listed[sched.schedule_id]
    assert one_off["one_off"] is True and one_off["status"] == "active"
    assert weekly["cron"] == "0 7 * * mon-fri" and weekly["timezone"] == "Europe/Berlin"
    for entry in (one_off, weekly):
        assert set(entry) >= {
            "schedule_id", "status", "cron", "interval", "timezone", "repeat", "runs",
            "next_run", "queue_name", "function",
        }  # fmt: skip
        assert datetime.fromisoformat(entry["next_run"]).tzinfo is not None
    table = naq_cli("list-scheduled", "-u", nats_url)
    assert table.returncode == 0 and sched.schedule_id in table.stdout

    for target in (job.job_id, sched.schedule_id):
        paused = naq_cli("job-control", target, "pause", "--json", "-u", nats_url)
        assert paused.returncode == 0, paused.stderr
        assert json.loads(paused.stdout)["status"] == "paused"
        resumed = naq_cli("job-control", target, "resume", "-u", nats_url)
        assert resumed.returncode == 0 and "active" in resumed.stdout

    at = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    moved = naq_cli(
        "job-control", job.job_id, "reschedule", "--at", at.isoformat(), "--json", "-u", nats_url
    )
    assert moved.returncode == 0, moved.stderr
    assert datetime.fromisoformat(json.loads(moved.stdout)["next_run"]) == at
    moved = naq_cli(
        "job-control", sched.schedule_id, "reschedule", "--in", "60", "--json", "-u", nats_url
    )
    assert moved.returncode == 0, moved.stderr
    assert (
        abs(
            datetime.fromisoformat(json.loads(moved.stdout)["next_run"]).timestamp()
            - time.time()
            - 60
        )
        < 5
    )

    for target in (job.job_id, sched.schedule_id):
        gone = naq_cli("job-control", target, "cancel", "-u", nats_url)
        assert gone.returncode == 0 and "cancelled" in gone.stdout
    assert naq.list_schedules_sync(queue_name=queue, nats_url=nats_url) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["job-control", "nope", "cancel"], "nothing to cancel"),
        (["job-control", "nope", "pause"], "no scheduled job or schedule"),
        (["job-control", "nope", "reschedule"], "exactly one of --at"),
        (["job-control", "nope", "reschedule", "--at", "soon"], "not an ISO 8601"),
        (["job-control", "nope", "pause", "--in", "5"], "only apply to reschedule"),
    ],
)
def test_job_control_errors_are_one_line(nats_url: str, args: list[str], message: str) -> None:
    out = naq_cli(*args, "-u", nats_url)
    assert out.returncode == 1
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_scheduler_command_runs_schedules_and_stops_on_sigterm(
    nats_url: str, queue: str, worker_thread: Any
) -> None:
    tag = f"{queue}-cli"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    proc = subprocess.Popen(
        [*NAQ, "scheduler", "-u", nats_url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with worker_thread([queue], nats_url, concurrency=2):
            naq.schedule_sync(
                sched_jobs.record, tag, interval=0.3, repeat=2, queue_name=queue, nats_url=nats_url
            )
            deadline = time.monotonic() + 15
            while len(sched_jobs.runs(tag)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert len(sched_jobs.runs(tag)) == 2
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "is the leader" in output and "stopped" in output


def test_sync_client_scheduling_methods(nats_url: str, queue: str) -> None:
    with naq.SyncClient(nats_url, queue_name=queue) as client:
        job = client.enqueue_at(datetime.now(UTC) + timedelta(days=1), sched_jobs.record, "s")
        later = client.enqueue_in(3600, sched_jobs.record, "s")
        sched = client.schedule(sched_jobs.record, "s", interval=timedelta(hours=1), repeat=2)
        assert {s.schedule_id for s in client.list_schedules(queue_name=queue)} == {
            job.job_id,
            later.job_id,
            sched.schedule_id,
        }
        assert client.pause_scheduled_job(sched.schedule_id).status == "paused"
        assert client.resume_scheduled_job(sched.schedule_id).status == "active"
        assert client.modify_scheduled_job(sched.schedule_id, repeat=5).repeat == 5
        for target in (job.job_id, later.job_id, sched.schedule_id):
            assert client.cancel_scheduled_job(target) is True
        assert client.list_schedules(queue_name=queue) == []
    assert naq.pause_scheduled_job_sync is not None and naq.resume_scheduled_job_sync is not None
    job = naq.enqueue_at_sync(
        datetime.now(UTC) + timedelta(days=1),
        sched_jobs.record,
        "s",
        queue_name=queue,
        nats_url=nats_url,
    )
    assert naq.modify_scheduled_job_sync(
        job.job_id, next_run=timedelta(hours=2), nats_url=nats_url
    ).one_off
    assert naq.cancel_scheduled_job_sync(job.job_id, nats_url=nats_url) is True
