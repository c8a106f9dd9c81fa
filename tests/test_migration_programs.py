"""Whole programs written the way the original naq's README and examples taught, run as its
users run them: ``naq worker default --log-level INFO`` in the project folder, then
``python main.py`` beside it, against naq. They must run unchanged (docs/migration.md).

The programs are written here in the original's style (they are not copies): job functions
in a ``tasks.py`` or in the script itself under the ``__main__`` guard, ``enqueue_sync`` and
``await enqueue`` without a queue name, results read with ``Job.fetch_result_sync`` in a
loop catching ``naq.exceptions.JobNotFoundError``, listings read as dicts with the original's
keys, ``schedule_sync(...).job_id``, ``close_sync_connections()`` at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from naq.server import EmbeddedServer

WAIT = 60.0
#: the original README's worker command
README_WORKER = [sys.executable, "-m", "naq", "worker", "default", "--log-level", "INFO"]

TASKS = '''
import time


def count_words(text):
    """The README's first job."""
    print(f"Counting words in: {text[:20]!r}")
    return len(text.split())


def slow_square(n):
    time.sleep(1.0)
    return n * n


def broken(x):
    raise ValueError(f"cannot handle {x}")
'''

# The README: enqueue_sync from a script, Job.fetch_result_sync to read the result later.
README_MAIN = """
import time

from naq import Job, enqueue_sync, enqueue_in_sync, setup_logging
from naq.exceptions import JobExecutionError, JobNotFoundError
from tasks import broken, count_words

setup_logging(level="WARNING")

job = enqueue_sync(count_words, "This is a sample text with several words.")
print(f"Job {job.job_id} enqueued.")
later = enqueue_in_sync(0.2, count_words, "one two three")
bad = enqueue_sync(broken, 7)

def wait_for(job_id):
    for _ in range(200):
        try:
            return Job.fetch_result_sync(job_id)
        except JobNotFoundError:
            time.sleep(0.1)
    raise SystemExit(f"no result for {job_id}")

print("result:", wait_for(job.job_id))
print("later:", wait_for(later.job_id))
try:
    wait_for(bad.job_id)
except JobExecutionError as e:
    print("failed as expected:", "cannot handle 7" in str(e))
"""

# hello_world: the job function is defined in the script itself, enqueued from asyncio.run.
HELLO_MAIN = """
import asyncio
import os
import time

from naq import Job, enqueue, setup_logging
from naq.exceptions import JobNotFoundError

setup_logging(level="INFO")


def say_hello(name: str):
    print(f"Hello, {name}!")
    return f"Greeting for {name} completed."


async def main():
    job = await enqueue(say_hello, name="World", nats_url=os.environ["NAQ_NATS_URL"])
    return job


if __name__ == "__main__":
    job = asyncio.run(main())
    print("function:", job.function)
    for _ in range(200):
        try:
            print("result:", Job.fetch_result_sync(job.job_id))
            break
        except JobNotFoundError:
            time.sleep(0.1)
"""

# Monitoring: listings as dicts with the original's keys, a schedule's job_id, statuses as
# strings, and close_sync_connections() at the end.
MONITOR_MAIN = """
import json
import time

import naq
from naq import (
    cancel_scheduled_job_sync,
    close_sync_connections,
    enqueue_sync,
    get_job_status_sync,
    list_workers_sync,
    schedule_sync,
)
from tasks import count_words, slow_square

job = enqueue_sync(slow_square, 4)
deadline = time.time() + 30
busy = None
while busy is None and time.time() < deadline:
    for w in list_workers_sync():
        if w["status"] == "busy" and w.get("current_job_id") == job.job_id:
            busy = w
    time.sleep(0.05)
print("busy worker:", busy is not None, busy and busy["hostname"] != "", busy and busy["pid"] > 0)
print("as json:", sorted(json.loads(json.dumps(busy.to_dict())))[:3] if busy else None)
while get_job_status_sync(job.job_id) != "completed" and time.time() < deadline:
    time.sleep(0.05)
print("status:", get_job_status_sync(job.job_id) == "completed")

s = schedule_sync(count_words, "a b", cron="0 3 * * *")
print("schedule job_id is its id:", s.job_id == s.schedule_id)
listed = [x for x in naq.list_schedules_sync() if x["job_id"] == s.job_id]
print("listed:", len(listed), listed[0]["cron"], listed[0]["status"])
print("cancelled:", cancel_scheduled_job_sync(s.job_id))
close_sync_connections()
"""


def write(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(textwrap.dedent(body))


def env_for(nats_url: str) -> dict[str, str]:
    """The test's environment without ``NAQ_*``, pointed at the test server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env["NAQ_NATS_URL"] = nats_url
    return env


@pytest.fixture(scope="module")
def project(
    nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A project folder with the programs, and ``naq worker default --log-level INFO``
    running in it (as the original's README starts it; with a short heartbeat)."""
    nats_url = nats_server.url
    folder = tmp_path_factory.mktemp("original-project")
    write(folder, "tasks.py", TASKS)
    write(folder, "main.py", README_MAIN)
    write(folder, "hello_world.py", HELLO_MAIN)
    write(folder, "monitor.py", MONITOR_MAIN)
    log_path = folder.parent / "original-worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            # the README's command; a short heartbeat so the listing sees the 1 s job running
            # (a worker's busy/idle is as of its last heartbeat, every 5 s by default)
            [*README_WORKER, "--heartbeat-interval", "0.2"],
            cwd=folder,
            env=env_for(nats_url),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield folder
        finally:
            worker.kill()
            worker.wait()
    print(log_path.read_text(errors="replace")[-3000:])


def run_program(project: Path, nats_url: str, script: str) -> str:
    done = subprocess.run(
        [sys.executable, script],
        cwd=project,
        env=env_for(nats_url),
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    assert "Traceback" not in done.stderr, output
    return done.stdout


def test_the_readme_program_runs_unchanged(project: Path, nats_url: str) -> None:
    out = run_program(project, nats_url, "main.py")
    assert "result: 8\n" in out, out
    assert "later: 3\n" in out, out
    assert "failed as expected: True\n" in out, out


def test_a_job_function_defined_in_the_script_runs_on_a_worker_beside_it(
    project: Path, nats_url: str
) -> None:
    out = run_program(project, nats_url, "hello_world.py")
    assert "function: hello_world:say_hello\n" in out, out
    assert "result: Greeting for World completed.\n" in out, out


def test_listings_as_dicts_schedules_and_closing_run_unchanged(
    project: Path, nats_url: str
) -> None:
    out = run_program(project, nats_url, "monitor.py")
    assert "busy worker: True True True\n" in out, out
    assert "as json: ['concurrency', 'current_job_id', 'hostname']\n" in out, out
    assert "status: True\n" in out, out
    assert "schedule job_id is its id: True\n" in out, out
    assert "listed: 1 0 3 * * * active\n" in out, out
    assert "cancelled: True\n" in out, out
