"""The observability examples run as a user runs them (``python main.py`` in the example's
folder, against the test's server through NAQ_NATS_URL) and print what they promise: the
tracing one links each job's consumer spans to its producer span through the job's headers,
the error reporting one captures the failed job's exception and the dead letter."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from tests.test_examples import run_example

HEX_ID = re.compile(r"[0-9a-f]{32}")


def assert_ran_cleanly(done: subprocess.CompletedProcess[str]) -> None:
    """The example exited 0 (its own check passed) and printed no traceback."""
    output = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, output
    assert "Traceback" not in done.stderr, output


def tagged_lines(stdout: str, tag: str) -> list[dict[str, Any]]:
    """The JSON of each ``<tag> {json}`` line."""
    prefix = tag + " "
    return [
        json.loads(line[len(prefix) :]) for line in stdout.splitlines() if line.startswith(prefix)
    ]


def test_tracing_example_links_each_run_to_its_enqueue(nats_url: str) -> None:
    done = run_example("tracing", nats_url)
    stdout = done.stdout
    traces = {t["job_id"]: t for t in tagged_lines(stdout, "JOB-TRACE")}
    assert len(traces) == 3, f"stdout:\n{stdout}\nstderr:\n{done.stderr}"
    seen_span_ids: set[str] = set()
    for job_id, trace in traces.items():
        producer = trace["producer"]
        assert producer is not None and producer["kind"] == "PRODUCER", trace
        assert producer["name"] == "publish tracing-example"
        assert HEX_ID.fullmatch(producer["trace_id"]), trace
        assert trace["consumers"], f"job {job_id} has no consumer span"
        for consumer in trace["consumers"]:
            assert consumer["kind"] == "CONSUMER" and consumer["name"] == "process tracing-example"
            # the link made through the job's headers: same trace, child of the producer span
            assert consumer["trace_id"] == producer["trace_id"], trace
            assert consumer["parent_id"] == producer["span_id"], trace
        ids = [producer["span_id"], *(c["span_id"] for c in trace["consumers"])]
        assert seen_span_ids.isdisjoint(ids) and len(set(ids)) == len(ids), trace
        seen_span_ids.update(ids)
        assert trace["linked"] is True
    # every job is a trace of its own
    assert len({t["producer"]["trace_id"] for t in traces.values()}) == 3
    runs = sorted(
        (t["function"], [(c["attempt"], c["outcome"], c["status"]) for c in t["consumers"]])
        for t in traces.values()
    )
    assert runs == [
        ("tasks:price", [(1, "completed", "OK")]),
        ("tasks:price", [(1, "retrying", "ERROR"), (2, "failed", "ERROR")]),
        ("tasks:slow_total", [(1, "completed", "OK")]),
    ]
    assert stdout.count("linked: yes") == 3
    assert_ran_cleanly(done)


def test_error_reporting_example_captures_the_failure_and_the_dead_letter(
    nats_url: str,
) -> None:
    done = run_example("error_reporting", nats_url)
    stdout = done.stdout
    events = tagged_lines(stdout, "SENTRY-EVENT")
    assert sorted(e["kind"] for e in events) == ["exception", "message"], (
        f"stdout:\n{stdout}\nstderr:\n{done.stderr}"
    )
    failure = next(e for e in events if e["kind"] == "exception")
    assert failure["exception_type"] == "ValueError"
    assert "twelve" in failure["exception_value"]
    assert failure["level"] == "error"
    assert failure["raised_in"] == "parse_quantity"  # its traceback came along
    tags = failure["tags"]
    assert HEX_ID.fullmatch(tags.pop("naq.job_id")), failure
    assert tags == {
        "naq.queue": "error-reporting-example",
        "naq.function": "tasks:parse_quantity",
        "naq.attempt": "2",  # retried once, reported once: when it failed for good
        "naq.outcome": "failed",
    }
    dead = next(e for e in events if e["kind"] == "message")
    assert dead["message"] == "naq dead letter: os:getcwd"
    assert dead["level"] == "error"
    assert "not allowed" in dead["reason"]
    dead_tags = dead["tags"]
    assert HEX_ID.fullmatch(dead_tags.pop("naq.job_id")), dead
    assert dead_tags == {
        "naq.queue": "error-reporting-example",
        "naq.function": "os:getcwd",
        "naq.attempt": "1",
        "naq.outcome": "dead",
    }
    assert "2 event(s) would have been sent to Sentry" in stdout
    assert_ran_cleanly(done)
