"""Hooks (middleware): registered globally, on a Queue or on a Worker; sync or async; a hook
that raises is logged and never fails its job or enqueue. Real server, real worker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests import hook_jobs
from tests.cli_run import naq_cli
from tests.helpers import eventually, queue_worker

import naq
from naq.hooks import JobRun, Outcome, global_hooks
from naq.transport import streams


@pytest.fixture(autouse=True)
def _no_global_hooks() -> Any:
    yield
    global_hooks.clear()


def _queue() -> str:
    return f"hooks-{uuid.uuid4().hex[:8]}"


class Recorder(naq.Middleware):
    """Records every hook call as (hook, job_id, outcome)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.runs: dict[str, JobRun] = {}

    def _note(self, name: str, run: JobRun) -> None:
        self.calls.append((name, run.job_id, run.outcome))
        if run.job_id:
            self.runs[run.job_id] = run

    def before_job(self, run: JobRun) -> None:
        run.state["seen"] = True
        self._note("before_job", run)

    def after_job(self, run: JobRun) -> None:
        self._note("after_job", run)

    def on_retry(self, run: JobRun) -> None:
        self._note("on_retry", run)

    def on_failure(self, run: JobRun) -> None:
        self._note("on_failure", run)

    def on_dead(self, run: JobRun) -> None:
        self._note("on_dead", run)

    def on_worker_start(self, worker: Any) -> None:
        self.calls.append(("on_worker_start", worker.worker_id, None))

    def on_worker_stop(self, worker: Any) -> None:
        self.calls.append(("on_worker_stop", worker.worker_id, None))

    def kinds(self, job_id: str) -> list[str]:
        return [name for name, jid, _ in self.calls if jid == job_id]


async def test_worker_hooks_see_each_outcome_in_order(nats_url: str) -> None:
    queue = _queue()
    recorder = Recorder()
    async with naq.Queue(queue, nats_url=nats_url) as q:
        good = await q.enqueue(hook_jobs.ok, 21)
        retried = await q.enqueue(hook_jobs.boom, "x", max_retries=1, retry_delay=0.1)
        bad_async = await q.enqueue(hook_jobs.async_ok, 1)
        async with queue_worker(queue, nats_url, hooks=[recorder]) as worker:
            assert await good.result(timeout=10) == 42
            assert await bad_async.result(timeout=10) == 2
            with pytest.raises(naq.JobExecutionError):
                await retried.result(timeout=10)

            async def failure_seen() -> bool:
                return "on_failure" in recorder.kinds(retried.job_id)

            await eventually(failure_seen)
    assert recorder.calls[0] == ("on_worker_start", worker.worker_id, None)
    assert recorder.calls[-1] == ("on_worker_stop", worker.worker_id, None)
    assert recorder.kinds(good.job_id) == ["before_job", "after_job"]
    assert recorder.kinds(retried.job_id) == [
        "before_job",
        "after_job",
        "on_retry",
        "before_job",
        "after_job",
        "on_failure",
    ]
    run = recorder.runs[good.job_id]
    assert run.outcome == Outcome.COMPLETED and run.result == 42
    assert run.args == (21,) and run.function == "tests.hook_jobs:ok"
    assert run.duration is not None and run.duration >= 0
    assert run.state["seen"] is True and run.worker_id == worker.worker_id
    failed = recorder.runs[retried.job_id]
    assert failed.outcome == Outcome.FAILED and isinstance(failed.error, ValueError)
    assert failed.attempt == 2


async def test_a_raising_hook_never_fails_its_job(nats_url: str) -> None:
    queue = _queue()
    calls: list[str] = []

    def broken(run: JobRun) -> None:
        calls.append(run.job_id or "")
        raise RuntimeError("hook bug")

    async def broken_async(run: JobRun) -> None:
        raise RuntimeError("async hook bug")

    naq.add_hook("before_job", broken)
    naq.add_hook("after_job", broken_async)
    naq.add_hook("before_enqueue", broken)
    async with naq.Queue(queue, nats_url=nats_url) as q:
        job = await q.enqueue(hook_jobs.ok, 2)  # the raising before_enqueue changes nothing
        async with queue_worker(queue, nats_url):
            assert await job.result(timeout=10) == 4
    assert calls.count(job.job_id) == 2  # before_enqueue and before_job both ran


async def test_async_before_job_is_awaited_before_the_function(nats_url: str) -> None:
    queue = _queue()
    order: list[str] = []

    async def before(run: JobRun) -> None:
        await asyncio.sleep(0.05)
        order.append(f"before {run.job_id}")

    def after(run: JobRun) -> None:
        order.append(f"after {run.job_id} {run.outcome}")

    hooks = naq.Hooks()
    hooks.add("before_job", before)
    hooks.add("after_job", after)
    async with naq.Queue(queue, nats_url=nats_url) as q:
        job = await q.enqueue(hook_jobs.ok, 1)
        async with queue_worker(queue, nats_url, hooks=hooks):
            assert await job.result(timeout=10) == 2

            async def after_seen() -> bool:
                return len(order) == 2

            await eventually(after_seen)
    assert order == [f"before {job.job_id}", f"after {job.job_id} completed"]


async def test_producer_hooks_and_headers_reach_the_worker(nats_url: str) -> None:
    queue = _queue()
    seen: dict[str, dict[str, str]] = {}
    stored: list[str] = []

    def before_enqueue(job: naq.Job) -> None:
        job.headers["traceparent"] = f"00-{job.job_id}-01"
        job.headers["Nats-Msg-Id"] = "hijack"  # reserved: left out
        job.headers["bad"] = "line\r\nbreak"  # not a header value: left out

    async def after_enqueue(job: naq.Job) -> None:
        stored.append(job.job_id)

    @naq.add_hook("before_job")
    def before_job(run: JobRun) -> None:
        seen[run.job_id or ""] = dict(run.headers)

    q = naq.Queue(queue, nats_url=nats_url, hooks=naq.Hooks())
    q.hooks.add("before_enqueue", before_enqueue)
    q.hooks.add("after_enqueue", after_enqueue)
    async with q:
        one = await q.enqueue(hook_jobs.ok, 1)
        many = await q.enqueue_many([(hook_jobs.ok, (n,)) for n in range(3)])
        later = await q.enqueue_in(0.1, hook_jobs.ok, 5)
        own = await q.enqueue(hook_jobs.my_headers)
        # the job's message carries them as NATS headers too
        message = await streams.get_message(
            await q.connection(), "NAQ_JOBS", subject=f"naq.queue.{queue}"
        )
        assert message is not None
        assert message.headers["traceparent"] == f"00-{own.job_id}-01"
        assert "bad" not in message.headers
        async with queue_worker(queue, nats_url):
            for job in [one, *many, later]:
                await job.result(timeout=10)
            # and the job's own code sees them
            assert await own.result(timeout=10) == {"traceparent": f"00-{own.job_id}-01"}
    ids = [one.job_id, *(j.job_id for j in many), later.job_id, own.job_id]
    assert stored == ids
    for job_id in ids:
        assert seen[job_id] == {"traceparent": f"00-{job_id}-01"}


def test_sync_enqueue_runs_global_hooks(nats_url: str) -> None:
    queue = _queue()
    names: list[str] = []
    naq.add_hook("after_enqueue", lambda job: names.append(job.job_id))
    job = naq.enqueue_sync(hook_jobs.ok, 3, queue_name=queue, nats_url=nats_url)
    assert names == [job.job_id]


def test_bad_registrations_are_clear_errors() -> None:
    hooks = naq.Hooks()
    with pytest.raises(naq.ConfigurationError, match="unknown hook 'before_jobs'"):
        hooks.add("before_jobs", print)
    with pytest.raises(naq.ConfigurationError, match="must be callable"):
        hooks.add("after_job", 3)  # type: ignore[call-overload]
    with pytest.raises(naq.ConfigurationError, match="no hook methods"):
        hooks.add_middleware(object())
    with pytest.raises(naq.ConfigurationError, match="no hook methods"):
        naq.Worker("q", hooks=[naq.Middleware()])


async def test_dead_letters_fire_on_dead(nats_url: str) -> None:
    queue = _queue()
    recorder = Recorder()
    async with naq.Queue(queue, nats_url=nats_url) as q:
        conn = await q.connection()
        await conn.ensure_jobs_stream()
        await conn.publish(f"naq.queue.{queue}", b"not json")
        async with queue_worker(queue, nats_url, hooks=[recorder]):

            async def dead_seen() -> bool:
                return any(name == "on_dead" for name, _, _ in recorder.calls)

            await eventually(dead_seen)
    dead = [c for c in recorder.calls if c[0] == "on_dead"]
    assert dead == [("on_dead", None, Outcome.DEAD)]


def test_naq_worker_takes_middleware_by_name(nats_url: str, tmp_path: Path) -> None:
    queue = _queue()
    log = tmp_path / "hooks.log"
    job = naq.enqueue_sync(hook_jobs.ok, 5, queue_name=queue, nats_url=nats_url)
    env = {"NAQ_TEST_HOOK_LOG": str(log)}
    args = ("worker", queue, "--burst", "-u", nats_url)
    ran = naq_cli(*args, "--middleware", "tests.hook_jobs:FileLog", env=env)
    assert ran.code == 0, ran.stderr
    assert log.read_text().splitlines() == [
        f"before_job {job.job_id}",
        f"after_job {job.job_id} completed",
    ]
    missing = naq_cli(*args, "--middleware", "tests.hook_jobs:Nope", env=env)
    assert missing.code == 1
    assert missing.error_lines == [
        "error: cannot load middleware 'tests.hook_jobs:Nope': AttributeError: module "
        "'tests.hook_jobs' has no attribute 'Nope'"
    ]
    plain = naq_cli(*args, "--middleware", "tests.hook_jobs", env=env)
    assert plain.code == 1 and "must be written module:name" in plain.stderr


class _LogLines:
    """Stands in for naq.hooks' logger: keeps each warning as text (and whether it came
    with an exception's traceback), without touching loguru's global state."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []
        self._with_exception = False

    def opt(self, *, exception: BaseException | None = None) -> _LogLines:
        self._with_exception = exception is not None
        return self

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append((message.format(*args), self._with_exception))
        self._with_exception = False


def test_a_failing_hook_is_reported_once_then_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import naq.hooks as hooks_module

    log = _LogLines()
    clock = [100.0]
    monkeypatch.setattr(hooks_module, "logger", log)
    monkeypatch.setattr(hooks_module.time, "monotonic", lambda: clock[0])

    def broken(run: Any) -> None:
        raise RuntimeError("again")

    own = naq.Hooks()
    own.add("after_job", broken)
    runner = hooks_module.HookRunner(own)
    for _ in range(5):  # the first is reported with its traceback, the next 4 are counted
        runner.fire("after_job", None)
    clock[0] += hooks_module._REPORT_EVERY
    runner.fire("after_job", None)  # a minute later: one line with the count
    assert len(log.lines) == 2
    first, later = log.lines
    assert first[1] and "raised RuntimeError: again" in first[0]
    assert not later[1] and "failed 5 more times since its last report" in later[0]
