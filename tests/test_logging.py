"""naq's logging follows loguru's convention for libraries and never hides the host's logs.

Loguru's configuration is global to a process, so what depends on it (import, setup, the stdlib
bridge) is checked in a fresh ``python`` subprocess; the job fields in records are checked
with an in-process worker; ``naq worker`` and ``naq queues`` run as real subprocesses.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

import naq
from conftest import WAIT

ROOT = Path(__file__).resolve().parent.parent

#: Source of ``naq_log(level, message, exception=False)``, run in a namespace named
#: ``naq.probe``: its records are treated by loguru exactly as naq's own.
NAQ_LOG_SOURCE = (
    "from loguru import logger\n"
    "def naq_log(level, message, exception=False):\n"
    "    logger.opt(exception=exception).log(level, message)\n"
)
SCRIPT_PRELUDE = (
    "import json, sys\n"
    f"namespace = {{'__name__': 'naq.probe'}}\nexec({NAQ_LOG_SOURCE!r}, namespace)\n"
    "naq_log = namespace['naq_log']\n"
)


def _naq_logger() -> Callable[..., None]:
    namespace: dict[str, Any] = {"__name__": "naq.probe"}
    exec(NAQ_LOG_SOURCE, namespace)
    log: Callable[..., None] = namespace["naq_log"]
    return log


naq_log = _naq_logger()


def _env(**extra: str) -> dict[str, str]:
    """The parent's environment without ``NAQ_*`` / ``LOGURU_*`` variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAQ_", "LOGURU_"))}
    env.update(extra)
    return env


def _python(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (after the ``naq_log`` helper) in a fresh interpreter at the repo root."""
    code = SCRIPT_PRELUDE + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _naq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "naq", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _count(text: str, needle: str) -> int:
    return sum(needle in line for line in text.splitlines())


# --------------------------------------------------------------------------- off until enabled


def test_importing_naq_disables_its_records_until_the_host_enables_them() -> None:
    proc = _python(
        """
        import naq
        from loguru import logger
        got = []
        logger.add(lambda m: got.append(m.record["message"]), level="TRACE")
        naq_log("ERROR", "naq while disabled")
        logger.info("app record")
        logger.enable("naq")
        naq_log("INFO", "naq once enabled")
        print(json.dumps(got))
        """
    )
    assert json.loads(proc.stdout) == ["app record", "naq once enabled"]
    assert "naq while disabled" not in proc.stderr
    assert _count(proc.stderr, "app record") == 1


# --------------------------------------------------------------------------- setup_logging


def test_setup_logging_keeps_the_application_sinks_and_records() -> None:
    proc = _python(
        """
        from loguru import logger
        before = []
        logger.add(lambda m: before.append(m.record["message"]), level="DEBUG")
        import naq
        naq.setup_logging("WARNING")
        naq.setup_logging("info")  # again, another level: replaces naq's sink, no duplicates
        after = []
        logger.add(lambda m: after.append(m.record["message"]), level="DEBUG")
        logger.debug("app debug")
        logger.info("app info")
        naq_log("DEBUG", "naq debug")
        naq_log("INFO", "naq info")
        print(json.dumps({"before": before, "after": after}))
        """
    )
    sinks = json.loads(proc.stdout)
    expected = ["app debug", "app info", "naq debug", "naq info"]
    assert sinks == {"before": expected, "after": expected}
    # loguru's default handler was replaced by one stderr sink: every line once, naq's at INFO
    assert _count(proc.stderr, "app debug") == 1, proc.stderr
    assert _count(proc.stderr, "app info") == 1, proc.stderr
    assert _count(proc.stderr, "naq info") == 1, proc.stderr
    assert "naq debug" not in proc.stderr


def test_setup_logging_adds_no_sink_when_the_application_configured_loguru() -> None:
    proc = _python(
        """
        import sys
        from loguru import logger
        logger.remove()
        logger.add(sys.stdout, format="app sink: {message}", level="INFO")
        import naq
        naq.setup_logging("INFO")
        logger.info("app info")
        naq_log("INFO", "naq info")
        """
    )
    assert proc.stdout.splitlines() == ["app sink: app info", "app sink: naq info"]
    assert proc.stderr == ""


def test_setup_logging_names_a_bad_level() -> None:
    with pytest.raises(naq.ConfigurationError, match="bogus"):
        naq.setup_logging("bogus")
    with pytest.raises(naq.ConfigurationError, match="-1"):
        naq.log_to_stdlib(-1)


# --------------------------------------------------------------------------- stdlib bridge


def test_log_to_stdlib_delivers_naq_records_to_logging_handlers() -> None:
    proc = _python(
        """
        import logging
        got = []

        class Collect(logging.Handler):
            def emit(self, record):
                error = record.exc_info[1] if record.exc_info else None
                got.append([record.name, record.levelname, record.levelno, record.getMessage(),
                            repr(error), record.funcName])

        logging.basicConfig(level=logging.DEBUG, handlers=[Collect()])
        import naq
        naq.log_to_stdlib("INFO")
        naq_log("DEBUG", "naq debug")
        naq_log("WARNING", "naq warning")
        try:
            raise ValueError("boom")
        except ValueError:
            naq_log("ERROR", "naq failure", exception=True)
        from loguru import logger
        logger.info("app info")
        print(json.dumps(got))
        """
    )
    assert json.loads(proc.stdout) == [
        ["naq.probe", "WARNING", 30, "naq warning", "None", "naq_log"],
        ["naq.probe", "ERROR", 40, "naq failure", "ValueError('boom')", "naq_log"],
    ]
    # naq's records now go to logging, not also to loguru's stderr; the app's loguru lines stay
    assert "naq warning" not in proc.stderr
    assert _count(proc.stderr, "app info") == 1, proc.stderr


# --------------------------------------------------------------------------- job fields


@contextlib.contextmanager
def naq_records_enabled() -> Iterator[None]:
    """Enable naq's records for a block, then put back whatever state they were in."""
    seen: list[str] = []
    probe = logger.add(lambda m: seen.append(m.record["message"]), level="TRACE")
    naq_log("TRACE", "probe")
    logger.remove(probe)
    logger.enable("naq")
    try:
        yield
    finally:
        if not seen:
            logger.disable("naq")


def sync_job_that_logs(tag: str) -> None:
    logger.info("job {}", tag)
    naq_log("INFO", f"naq {tag}")


async def async_job_that_logs(tag: str) -> None:
    logger.info("job {}", tag)
    naq_log("INFO", f"naq {tag}")


@pytest.mark.parametrize("func", [sync_job_that_logs, async_job_that_logs], ids=["sync", "async"])
async def test_records_logged_in_a_job_carry_its_id_queue_and_attempt(
    nats_url: str, queue: str, running_worker: Any, func: Any
) -> None:
    tag = uuid.uuid4().hex
    records: list[tuple[str, dict[str, Any]]] = []

    def collect(message: Any) -> None:
        if tag in message.record["message"]:
            records.append((message.record["message"], dict(message.record["extra"])))

    sink = logger.add(collect, level="INFO")
    try:
        with naq_records_enabled():
            first = await naq.enqueue(func, f"1-{tag}", queue_name=queue, nats_url=nats_url)
            second = await naq.enqueue(func, f"2-{tag}", queue_name=queue, nats_url=nats_url)
            async with running_worker([queue], nats_url, concurrency=1):
                await first.result(timeout=WAIT)
                await second.result(timeout=WAIT)
            logger.info("after the jobs {}", tag)
    finally:
        logger.remove(sink)

    def fields(job_id: str) -> dict[str, Any]:
        return {"job_id": job_id, "queue": queue, "attempt": 1}

    assert sorted(records) == sorted(
        [
            (f"job 1-{tag}", fields(first.job_id)),
            (f"naq 1-{tag}", fields(first.job_id)),
            (f"job 2-{tag}", fields(second.job_id)),  # the same thread, the next job's fields
            (f"naq 2-{tag}", fields(second.job_id)),
            (f"after the jobs {tag}", {}),
        ]
    )


# --------------------------------------------------------------------------- the CLI


def test_worker_prints_the_job_functions_own_log_lines(nats_url: str) -> None:
    queue = f"log-{uuid.uuid4().hex[:10]}"
    text = f"hello-{uuid.uuid4().hex[:8]}"
    with naq.SyncClient(nats_url) as client:
        job = client.enqueue("tests.cli_jobs:log_line", text, queue_name=queue)

    proc = _naq("worker", queue, "--burst", "-u", nats_url, env=_env())
    assert proc.returncode == 0, proc.stderr
    with naq.SyncClient(nats_url) as client:
        assert client.fetch_job_result(job.job_id, timeout=5) == text
    assert _count(proc.stderr, f"job says {text}") == 1, proc.stderr


def test_bad_log_level_is_one_error_line_without_a_coroutine_warning() -> None:
    proc = _naq("queues", env=_env(NAQ_LOG_LEVEL="bogus", NAQ_NATS_URL="nats://127.0.0.1:1"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "NAQ_LOG_LEVEL" in lines[0] and "bogus" in lines[0].lower()
    assert "never awaited" not in proc.stderr
