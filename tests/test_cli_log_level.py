"""``--log-level`` on ``naq worker`` and ``naq scheduler``, as the original naq's documented
start commands pass it (``naq worker default --log-level DEBUG``).

It sets naq's log level for that process with the meaning of ``NAQ_LOG_LEVEL`` (any case) and
wins over the environment; a bad value is one line on stderr and exit code 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from tests.cli_run import ROOT, naq_cli

import naq
from naq.cli.common import LOG_LEVELS
from naq.settings import _LOG_LEVELS

WAIT = 20.0


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def naq_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without ``NAQ_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env.update(extra or {})
    return env


def run_until(
    args: list[str], env: dict[str, str], enough: Callable[[list[str]], bool], linger: float = 0.0
) -> list[str]:
    """Run ``naq ARGS`` until the lines it wrote satisfy ``enough`` (or WAIT passes), then
    ``linger`` seconds more, stop it with SIGINT, and return every line it wrote (stdout and
    stderr together)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "naq", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stream = proc.stdout
    assert stream is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in stream))
    reader.start()
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not enough(list(lines)) and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(linger)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=WAIT)
        reader.join(timeout=WAIT)
        stream.close()
    return lines


def debug_lines(lines: list[str]) -> list[str]:
    """The lines naq's stderr sink wrote at DEBUG."""
    return [line for line in lines if " DEBUG " in line]


def test_the_accepted_levels_are_those_of_naq_log_level() -> None:
    assert set(LOG_LEVELS) == _LOG_LEVELS


# --------------------------------------------------------------------------- naq worker


def burst_worker(nats_url: str, queue: str, *options: str, env: dict[str, str]) -> list[str]:
    """Enqueue one priority job (whose puller start is logged at DEBUG) and run a burst
    worker on ``queue``; its output lines."""
    naq.enqueue_sync("missing_module:f", queue_name=queue, priority=5, nats_url=nats_url)
    done = subprocess.run(
        [sys.executable, "-m", "naq", "worker", queue, "--burst", "-u", nats_url, *options],
        cwd=ROOT,
        env=naq_env(env),
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_worker_log_level_debug_shows_debug_lines_and_wins_over_the_environment(
    nats_url: str,
) -> None:
    lines = burst_worker(
        nats_url, "loglevelw1", "--log-level", "DEBUG", env={"NAQ_LOG_LEVEL": "ERROR"}
    )
    assert any("pulling priority 5 jobs" in line for line in debug_lines(lines)), lines


def test_worker_log_level_info_shows_no_debug_lines_whatever_the_environment(
    nats_url: str,
) -> None:
    lines = burst_worker(nats_url, "loglevelw2", "-l", "info", env={"NAQ_LOG_LEVEL": "DEBUG"})
    assert debug_lines(lines) == [], lines
    assert any(" INFO " in line and "started" in line for line in lines), lines


# --------------------------------------------------------------------------- naq scheduler


def test_scheduler_log_level_sets_the_level_over_the_environment(nats_url: str) -> None:
    # The scheduler logs nothing at DEBUG in a normal run (its runs are enqueued in batches
    # without a line each), so this shows the option at work with INFO against an environment
    # that alone would stop the command (NAQ_LOG_LEVEL=bogus).
    lines = run_until(
        ["scheduler", "-u", nats_url, "--log-level", "Info"],
        naq_env({"NAQ_LOG_LEVEL": "bogus"}),
        lambda lines: any("is the leader" in line for line in lines),
    )
    assert any(" INFO " in line and "started" in line for line in lines), lines
    assert not any("error" in line.lower() for line in lines), lines


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(("command", "value"), [(["worker"], "loud"), (["scheduler"], "")])
def test_a_bad_log_level_is_one_line(command: list[str], value: str) -> None:
    result = naq_cli(*command, "--log-level", value, env={"NAQ_NATS_URL": "nats://127.0.0.1:1"})
    assert result.code == 1, (result.code, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.error_lines == [
        f"error: --log-level {value!r} is not a log level (one of TRACE, DEBUG, INFO, SUCCESS, "
        "WARNING, ERROR, CRITICAL, any case)"
    ]
    assert result.stdout == ""
