"""Long CLI operations (``naq purge``, ``naq dlq requeue``) with their progress bars, ``--json``
output free of colour codes and bars, and shell completion.

Commands run as real subprocesses against a real nats-server: without a terminal through
``tests.cli_run.naq_cli``, or with stdin, stdout and stderr on a pseudo-terminal (what a user
at a terminal has) through :func:`_run_in_pty`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from tests.cli_run import ROOT, naq_cli, run_in_terminal

import naq
from conftest import DLQ_STREAM, JOBS_STREAM, raw_nats, stream_count, stream_messages
from naq import deadletter, purge
from naq.models import decode_envelope
from naq.settings import load_settings
from naq.transport import Connection

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Jobs or dead letters of a "long" operation.
MANY = 2000
#: The installed ``naq`` script (shell completion is set up for that name).
NAQ_SCRIPT = Path(sys.executable).parent / "naq"
#: What a colour terminal claims.
COLOUR_ENV = {"FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "120"}


# --------------------------------------------------------------------------- helpers


def _env(url: str | None = None, **extra: str) -> dict[str, str]:
    """The parent's environment without ``NAQ_*`` variables, plus ``url`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env.pop("NO_COLOR", None)
    if url is not None:
        env["NAQ_NATS_URL"] = url
    env.update(extra)
    return env


def _run_in_pty(args: list[str], env: dict[str, str], answer: str | None = None) -> tuple[int, str]:
    """Run ``naq ARGS`` on a pseudo-terminal (see :func:`tests.cli_run.run_in_terminal`)."""
    return run_in_terminal([sys.executable, "-m", "naq", *args], env, answer)


def _plain(text: str) -> str:
    """``text`` as a terminal shows it in the end, roughly: colour and cursor codes gone."""
    return ANSI.sub("", text).replace("\r", "\n")


def _queue() -> str:
    return f"ops-{uuid.uuid4().hex[:10]}"


def _enqueue(url: str, queue: str, count: int) -> None:
    with naq.SyncClient(url) as client:
        client.enqueue_many(
            [("tests.cli_jobs:add", (i, 1), {}) for i in range(count)], queue_name=queue
        )


async def _bury(url: str, queue: str, count: int) -> list[str]:
    """``count`` dead letters of ``queue`` (real jobs moved from the queue to the dead-letter
    stream, as a worker would); returns their job ids."""
    await asyncio.to_thread(_enqueue, url, queue, count)
    messages = await stream_messages(url, JOBS_STREAM, f"naq.queue.{queue}")
    conn = Connection(load_settings(url))
    await conn.connect()
    try:
        letters = deadletter.DeadLetters(conn)
        jobs = [
            (m.data or b"", {str(k): str(v) for k, v in (m.headers or {}).items()})
            for m in messages
        ]
        job_ids = [decode_envelope(data).id for data, _ in jobs]
        for start in range(0, len(jobs), 200):
            await asyncio.gather(
                *(
                    letters.publish(
                        queue=queue,
                        payload=data,
                        reason="failed for the test",
                        kind="failed",
                        job_id=job_id,
                        original_headers=headers,
                    )
                    for (data, headers), job_id in zip(
                        jobs[start : start + 200], job_ids[start : start + 200], strict=True
                    )
                )
            )
    finally:
        await conn.close()
    async with raw_nats(url) as nc:
        await nc.jetstream().purge_stream(JOBS_STREAM, subject=f"naq.queue.{queue}")
    return job_ids


def _waiting(url: str, queue: str) -> int:
    return asyncio.run(stream_count(url, JOBS_STREAM, f"naq.queue.{queue}"))


def _dead(url: str, queue: str) -> int:
    return asyncio.run(stream_count(url, DLQ_STREAM, f"naq.dlq.{queue}"))


def _assert_steady_progress(calls: list[tuple[int, int]], total: int) -> None:
    """``calls`` report real progress: from 0 of ``total`` to ``total`` of ``total``, never
    backwards, through many steps in between (not one jump at the end)."""
    assert calls[0] == (0, total), calls[:3]
    assert calls[-1] == (total, total), calls[-3:]
    done = [d for d, _ in calls]
    assert done == sorted(done), "progress went backwards"
    assert all(d <= t for d, t in calls)
    assert len({d for d in done if 0 < d < total}) >= 50, f"only {len(set(done))} steps"


@pytest.fixture
def url(nats_url: str) -> str:
    return nats_url


# --------------------------------------------------------------------------- purge


def test_purge_in_terminal_shows_a_bar_that_ends_at_the_total(url: str) -> None:
    queue = _queue()
    _enqueue(url, queue, MANY)
    code, out = _run_in_pty(["purge", queue, "--force", "-u", url], _env(**COLOUR_ENV))
    assert code == 0, out
    screen = _plain(out)
    assert f"purge {queue}" in screen, screen
    assert f"{MANY}/{MANY}" in screen, screen
    assert re.search(r"[\d,]+/s", screen), screen  # the rate
    assert "eta" in screen, screen
    assert f"purged {MANY} jobs from {queue}" in screen
    assert _waiting(url, queue) == 0


def test_purge_json_in_terminal_has_no_bar_and_no_colour(url: str) -> None:
    queue = _queue()
    _enqueue(url, queue, MANY)
    code, out = _run_in_pty(["purge", queue, "--force", "--json", "-u", url], _env(**COLOUR_ENV))
    assert code == 0, out
    assert "\x1b[" not in out, repr(out[:500])
    assert json.loads(out) == [{"queue": queue, "purged": MANY}]


def test_purge_without_terminal_draws_no_bar_even_when_colour_is_forced(url: str) -> None:
    queue = _queue()
    _enqueue(url, queue, MANY)
    result = naq_cli("purge", queue, "--force", "-u", url, env=COLOUR_ENV)
    assert result.code == 0, result
    assert result.stderr == ""
    assert f"{MANY}/{MANY}" not in result.stdout
    assert f"purged {MANY} jobs from {queue}" in _plain(result.stdout)


async def test_purge_reports_progress_as_it_goes(nats_url: str) -> None:
    queue = _queue()
    await asyncio.to_thread(_enqueue, nats_url, queue, MANY)
    calls: list[tuple[int, int]] = []
    conn = Connection(load_settings(nats_url))
    await conn.connect()
    try:
        purged = await purge.purge_waiting_jobs(
            conn, queue, on_progress=lambda done, total: calls.append((done, total))
        )
    finally:
        await conn.close()
    assert purged == MANY
    _assert_steady_progress(calls, MANY)


# --------------------------------------------------------------------------- dlq requeue


def test_requeue_all_in_terminal_asks_then_shows_a_bar(url: str) -> None:
    queue = _queue()
    asyncio.run(_bury(url, queue, MANY))
    code, out = _run_in_pty(
        ["dlq", "requeue", "--all", "--queue", queue, "-u", url], _env(**COLOUR_ENV), answer="y"
    )
    assert code == 0, out
    screen = _plain(out)
    assert f"Requeue dead letters of {queue}?" in screen
    assert f"{MANY}/{MANY}" in screen, screen
    assert f"requeued {MANY} dead letters" in screen
    assert _dead(url, queue) == 0
    assert _waiting(url, queue) == MANY


def test_requeue_all_json_without_terminal_has_no_bar(url: str) -> None:
    queue = _queue()
    job_ids = asyncio.run(_bury(url, queue, 300))
    result = naq_cli("dlq", "requeue", "--all", "-q", queue, "--force", "--json", "-u", url)
    assert result.code == 0, result
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert [r["job_id"] for r in data["requeued"]] == job_ids  # oldest first
    assert data["skipped"] == []
    assert _dead(url, queue) == 0
    assert _waiting(url, queue) == 300


def test_requeue_all_without_terminal_refuses_unless_forced(url: str) -> None:
    queue = _queue()
    asyncio.run(_bury(url, queue, 3))
    result = naq_cli("dlq", "requeue", "--all", "-q", queue, "-u", url)
    assert result.code == 2, result
    assert result.error_lines == [
        "error: refusing to requeue without confirmation: no terminal; pass --force"
    ]
    assert _dead(url, queue) == 3


def test_requeue_answer_no_requeues_nothing(url: str) -> None:
    queue = _queue()
    asyncio.run(_bury(url, queue, 3))
    code, out = _run_in_pty(["dlq", "requeue", "--all", "-q", queue, "-u", url], _env(), answer="n")
    assert code == 1, out
    assert "requeue cancelled; nothing requeued" in _plain(out)
    assert _dead(url, queue) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name the dead letters to requeue by id, or pass --all (not both)"),
        (["1", "--all"], "name the dead letters to requeue by id, or pass --all (not both)"),
        (["1", "--queue", "q"], "--queue applies to --all only"),
    ],
    ids=["nothing", "both", "queue-without-all"],
)
def test_requeue_bad_arguments_are_one_clear_line(url: str, args: list[str], message: str) -> None:
    result = naq_cli("dlq", "requeue", *args, "-u", url)
    assert result.code == 2, result
    assert result.error_lines == [f"error: {message}"]


async def test_requeue_all_reports_progress_and_skips_what_it_cannot_requeue(
    nats_url: str,
) -> None:
    queue = _queue()
    await _bury(nats_url, queue, MANY)
    async with raw_nats(nats_url) as nc:  # a hand-made entry naming an invalid queue
        ack = await nc.jetstream().publish(
            f"naq.dlq.{queue}", b"junk", headers={"Naq-Dlq-Queue": "bad.name"}
        )
    calls: list[tuple[int, int]] = []
    conn = Connection(load_settings(nats_url))
    await conn.connect()
    try:
        outcome = await deadletter.requeue_dead_letters(
            conn, queue, on_progress=lambda done, total: calls.append((done, total))
        )
    finally:
        await conn.close()
    assert len(outcome.requeued) == MANY
    assert [entry_id for entry_id, _ in outcome.skipped] == [ack.seq]
    assert "bad.name" in outcome.skipped[0][1]
    _assert_steady_progress(calls, MANY + 1)
    assert await stream_count(nats_url, DLQ_STREAM, f"naq.dlq.{queue}") == 1  # left in place
    assert await stream_count(nats_url, JOBS_STREAM, f"naq.queue.{queue}") == MANY


# --------------------------------------------------------------------------- --json


def _json_commands(url: str) -> list[list[str]]:
    """Every ``--json`` command worth checking, with something to show in each."""
    queue = _queue()
    with naq.SyncClient(url) as client:
        job_id = client.enqueue("tests.cli_jobs:add", 1, 2, queue_name=queue).job_id
        client.enqueue_in(3600, "tests.cli_jobs:add", 3, 4, queue_name=queue)
        cancel_me = client.enqueue("tests.cli_jobs:add", 5, 6, queue_name=queue).job_id
    asyncio.run(_bury(url, queue, 1))
    entry = json.loads(naq_cli("dlq", "list", "-q", queue, "--json", "-u", url).stdout)[0]
    set_limit = naq_cli("limits", "set", f"queue:{queue}", "-c", "2", "-u", url)
    assert set_limit.code == 0, set_limit
    return [
        ["queues"],
        ["list-workers"],
        ["job", job_id],
        ["dlq", "list"],
        ["dlq", "show", str(entry["id"])],
        ["list-scheduled"],
        ["limits", "list"],
        ["job-control", cancel_me, "cancel"],
        ["dlq", "requeue", str(entry["id"])],
        ["purge", queue, "--force"],
    ]


def test_json_output_has_no_colour_even_on_a_colour_terminal(url: str) -> None:
    for command in _json_commands(url):
        code, out = _run_in_pty([*command, "--json", "-u", url], _env(**COLOUR_ENV))
        assert code == 0, (command, out)
        assert "\x1b[" not in out, (command, repr(out[:300]))
        json.loads(out)


def test_json_error_line_has_no_colour_on_a_colour_terminal(url: str) -> None:
    code, out = _run_in_pty(["job", "no-such-job", "--json", "-u", url], _env(**COLOUR_ENV))
    assert code == 1, out
    assert "\x1b[" not in out, repr(out)
    assert out.startswith("error: ") and "no-such-job" in out, out


# --------------------------------------------------------------------------- completion


def _script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``naq`` script (completion is generated for its name)."""
    assert NAQ_SCRIPT.exists(), f"{NAQ_SCRIPT} missing: is naq installed in this venv?"
    return subprocess.run(
        [str(NAQ_SCRIPT), *args],
        cwd=ROOT,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_show_completion_prints_a_bash_script_for_naq() -> None:
    proc = _script("--show-completion", "bash")
    assert proc.returncode == 0, proc.stderr
    assert "_NAQ_COMPLETE=complete_bash" in proc.stdout, proc.stdout
    assert re.search(r"^complete .* naq$", proc.stdout, re.M), proc.stdout


def test_completing_naq_q_offers_queues() -> None:
    proc = _script(_NAQ_COMPLETE="complete_bash", COMP_WORDS="naq q", COMP_CWORD="1")
    assert proc.returncode == 0, proc.stderr
    assert "queues" in proc.stdout.split(), proc.stdout


def test_completing_dlq_subcommands() -> None:
    proc = _script(_NAQ_COMPLETE="complete_bash", COMP_WORDS="naq dlq re", COMP_CWORD="2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["requeue"], proc.stdout


def test_install_completion_writes_the_script_for_the_shell(tmp_path: Path) -> None:
    proc = _script("--install-completion", "bash", HOME=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = tmp_path / ".bash_completions" / "naq.sh"
    assert "_NAQ_COMPLETE=complete_bash" in installed.read_text()
    assert str(installed) in (tmp_path / ".bashrc").read_text()


def test_help_and_version_still_work_with_completion_options() -> None:
    help_ = _script("--help", COLUMNS="120")
    assert help_.returncode == 0, help_.stderr
    for text in ("--install-completion", "--show-completion", "purge", "queues", "dlq"):
        assert text in help_.stdout, help_.stdout
    version = _script("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"naq {naq.__version__}"
