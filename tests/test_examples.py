"""Every runnable example under ``examples/`` runs as a user runs it (``python main.py`` in its
folder, against the test's server through NAQ_NATS_URL) and prints what its README promises.

The examples run all at once (one subprocess each, their own queue names) the first time a
test here needs one, so the whole file takes about as long as the slowest example."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from naq.server import EmbeddedServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OBSERVABILITY_TESTS = Path(__file__).resolve().parent / "test_examples_observability.py"
HEX_ID = r"[0-9a-f]{32}"

Run = subprocess.CompletedProcess[str]


def run_example(name: str, nats_url: str) -> Run:
    """Run ``examples/<name>/main.py`` from its folder, as a user would."""
    return subprocess.run(
        [sys.executable, "main.py"],
        cwd=EXAMPLES / name,
        env={**os.environ, "NAQ_NATS_URL": nats_url},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def explain(done: Run) -> str:
    """Everything the example printed, for assertion messages."""
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def lines_of(done: Run) -> list[str]:
    """The example's stdout, line by line, after checking it exited 0 without a traceback."""
    assert done.returncode == 0, explain(done)
    assert "Traceback" not in done.stderr, explain(done)
    assert done.stdout.rstrip().endswith("OK"), explain(done)
    return done.stdout.splitlines()


def has_line(done: Run, pattern: str) -> re.Match[str]:
    """The first stdout line matching ``pattern`` in full; fails when there is none."""
    for line in done.stdout.splitlines():
        found = re.fullmatch(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matches {pattern!r}\n{explain(done)}")


# -- what each example promises -------------------------------------------------------------


def check_hello_world(done: Run) -> None:
    lines_of(done)
    has_line(done, rf"enqueued tasks:greet as job {HEX_ID}")
    has_line(done, rf"enqueued tasks:add as job {HEX_ID}")
    has_line(done, r"greet result: 'Hello, Ada!'")
    has_line(done, r"add result: 5")
    has_line(done, r"greet status: completed")


def check_sync_client(done: Run) -> None:
    lines_of(done)
    has_line(done, rf"enqueue_sync: job {HEX_ID}, word_count result 4")
    has_line(done, r"SyncClient: 5 jobs, squares \[1, 4, 9, 16, 25\], last status completed")


def check_retries(done: Run) -> None:
    lines_of(done)
    has_line(done, r"flaky_fetch result: 'fetched https://example\.com/feed on attempt 3'")
    has_line(done, rf"tasks:flaky_fetch {HEX_ID}: completed after 3 attempts")
    for n in (1, 2):
        has_line(done, rf"  attempt {n}: builtins:ConnectionError: attempt {n}: .* timed out")
    has_line(done, r"  attempt 3: ok")
    charge = has_line(done, rf"tasks:charge ({HEX_ID}): failed after 2 attempts")[1]
    has_line(done, rf"charge raised JobExecutionError: job {charge} failed: .*RuntimeError.*")
    has_line(done, rf"dead letter \d+: job {charge} \(failed\) .*payment service unavailable.*")
    has_line(done, rf"requeued dead letter \d+ as job {charge}")
    has_line(done, r"charge result after requeue: 'order 42 charged'")


def check_dependencies(done: Run) -> None:
    lines_of(done)
    has_line(done, r"publish waits as: deferred")
    has_line(done, r"publish result: \['/tmp/cat\.jpg@1280', '/tmp/cat\.jpg@320'\]")
    has_line(done, r"good workflow statuses: completed completed completed completed")
    has_line(done, r"bad workflow statuses: failed cancelled cancelled cancelled")
    has_line(
        done, rf"bad publish raised JobCancelledError: job {HEX_ID} was cancelled .*never ran.*"
    )
    has_line(done, rf"bad resize: cancelled, dependency {HEX_ID} ended failed; this job never ran")


def check_scheduling(done: Run) -> None:
    lines_of(done)
    has_line(done, rf"enqueue_in job {HEX_ID}, enqueue_at job {HEX_ID}")
    has_line(done, rf"schedule {HEX_ID}: interval 1 s, repeat 3")
    has_line(done, rf"schedule {HEX_ID}: cron '\*/1 \* \* \* \* \*', repeat 2")
    has_line(done, r"enqueue_in result: \"reminder 'in 1 s' sent\"")
    runs: dict[str, list[float]] = {}
    for label, at in re.findall(r"^ran '(.+)' at \+([\d.]+) s$", done.stdout, re.MULTILINE):
        runs.setdefault(label, []).append(float(at))
    assert {k: len(v) for k, v in runs.items()} == {
        "in 1 s": 1,
        "at +2 s": 1,
        "every 1 s": 3,
        "cron */1 s": 2,
    }, explain(done)
    assert runs["in 1 s"][0] >= 1.0 and runs["at +2 s"][0] >= 1.9, explain(done)
    every = runs["every 1 s"]
    assert all(b - a >= 0.8 for a, b in itertools.pairwise(every)), explain(done)
    has_line(done, r"schedules left after their last run: 0")


def check_progress(done: Run) -> None:
    lines_of(done)
    seen = re.findall(r"^progress (\d+)%: (\d)/4 rows imported$", done.stdout, re.MULTILINE)
    percents = [int(p) for p, _rows in seen]
    assert len(percents) >= 2 and percents == sorted(set(percents)), explain(done)
    assert all(int(p) == 25 * int(rows) for p, rows in seen), explain(done)
    has_line(done, rf"result: 4 rows; progress seen {len(seen)} times")


def check_cancellation(done: Run) -> None:
    lines_of(done)
    has_line(done, r"cancel waiting send_newsletter: True")
    has_line(done, r"cancel running render_video: True")
    has_line(done, r"cancel running crunch_numbers: True")
    for name in ("send_newsletter", "render_video", "crunch_numbers"):
        has_line(done, rf"tasks:{name}: cancelled, result\(\) raised JobCancelledError")
    has_line(done, r"cancel render_video again: False \(it had finished\)")
    has_line(done, r"crunch_numbers saw cancelled=True on attempt 1")
    assert "send_newsletter ran" not in done.stdout, explain(done)
    elapsed = float(has_line(done, r"all done in ([\d.]+) s .*")[1])
    assert elapsed < 15, explain(done)  # the running jobs were stopped, not waited for


def check_fastapi_app(done: Run) -> None:
    lines_of(done)
    job_id = has_line(done, rf"POST /reports -> 202 job ({HEX_ID})")[1]
    result = "{'customer': 'acme', 'months': 6, 'total': 600}"
    has_line(
        done,
        re.escape(
            f"GET /reports/{{id}}?wait=10 -> 200 {{'job_id': '{job_id}', "
            f"'status': 'completed', 'result': {result}}}"
        ),
    )
    has_line(done, rf"GET a failed report -> 200 job {HEX_ID} failed: .*ValueError: months .*")
    has_line(done, r"GET /reports/no-such-job -> 404 \{'detail': 'no job no-such-job'\}")


def check_flask_app(done: Run) -> None:
    lines_of(done)
    job_id = has_line(done, rf"POST /thumbnails -> 202 job ({HEX_ID})")[1]
    has_line(
        done,
        re.escape(
            f"GET /thumbnails/<id>?wait=10 -> 200 {{'job_id': '{job_id}', "
            "'result': 'cat-64px.jpg', 'status': 'completed'}"
        ),
    )
    has_line(done, rf"GET a failed thumbnail -> 200 job {HEX_ID} failed: .*ValueError: size .*")
    has_line(done, r"GET /thumbnails/no-such-job -> 404")


def check_monitoring(done: Run) -> None:
    lines_of(done)
    events = re.findall(r"^event (\w+) +tasks:(\w+) attempt (\d)$", done.stdout, re.MULTILINE)
    assert sorted(events) == sorted(
        [("started", "resize", "1"), ("completed", "resize", "1")] * 3
        + [
            ("started", "corrupt_upload", "1"),
            ("retrying", "corrupt_upload", "1"),
            ("started", "corrupt_upload", "2"),
            ("failed", "corrupt_upload", "2"),
        ]
    ), explain(done)
    has_line(
        done,
        r"list_queues monitoring-example: 3 more completed, 1 more failed, waiting=0 workers=1",
    )
    has_line(done, r"list_workers monitoring-example-\w+: jobs_done=3 jobs_failed=1")
    has_line(done, r"after_job hook outcomes: \{'completed': 3, 'failed': 1, 'retrying': 1\}")
    for outcome, count in (("completed", 3), ("failed", 1), ("retrying", 1)):
        labels = f'outcome="{outcome}",queue="monitoring-example"'
        has_line(done, re.escape(f"metric naq_jobs_total{{{labels}}} {count}.0"))


CHECKS: dict[str, Callable[[Run], None]] = {
    "hello_world": check_hello_world,
    "sync_client": check_sync_client,
    "retries": check_retries,
    "dependencies": check_dependencies,
    "scheduling": check_scheduling,
    "progress": check_progress,
    "cancellation": check_cancellation,
    "fastapi_app": check_fastapi_app,
    "flask_app": check_flask_app,
    "monitoring": check_monitoring,
}


@pytest.fixture(scope="module")
def example_runs(nats_server: EmbeddedServer) -> dict[str, Run]:
    """Every example of :data:`CHECKS`, run at once against the module's server."""
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {name: pool.submit(run_example, name, nats_server.url) for name in CHECKS}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_prints_what_it_promises(name: str, example_runs: dict[str, Run]) -> None:
    CHECKS[name](example_runs[name])


def test_every_example_folder_has_a_test() -> None:
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith(".")}
    observed = set(re.findall(r'run_example\("(\w+)"', OBSERVABILITY_TESTS.read_text()))
    untested = folders - set(CHECKS) - observed
    assert not untested, f"examples without a test: {sorted(untested)}"
    assert all((EXAMPLES / name / "main.py").is_file() for name in CHECKS)
