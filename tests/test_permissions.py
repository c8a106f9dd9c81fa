"""The example NATS permissions of ``deploy/nats/permissions.conf``, on a real server started
from that very file: each role (producer, worker, read-only dashboard) can do its work with
no permission refused, and is refused, as a real permissions violation, what it must not do.
Each role receives its replies on inbox subjects of its own (``NAQ_NATS_INBOX_PREFIX`` set to
``_INBOX_<role>``, as docs/security.md says), and may not subscribe to another role's.

The server writes its log to a file; the working runs assert it holds no violation at all
(a refused write can hide: a worker retries it), the refusals assert naq's error names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from tests import jobs
from tests.helpers import WAIT, running_scheduler, running_worker

import naq
from naq.dashboard import create_app
from naq.events import read_events
from naq.server import EmbeddedServer
from naq.settings import load_settings

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "nats" / "permissions.conf"
#: The placeholders the config reads from the environment (test values, made up here).
PASSWORDS = {
    "admin": "test-admin-pw",
    "producer": "test-producer-pw",
    "worker": "test-worker-pw",
    "dashboard": "test-dashboard-pw",
}
TOKEN = "permissions-test-token"
#: Every read of the dashboard's JSON API (``{q}`` a queue, ``{job}`` a job id).
DASHBOARD_READS = (
    "/api/health",
    "/api/overview",
    "/api/queues",
    "/api/queues/{q}",
    "/api/jobs/{job}",
    "/api/workers",
    "/api/schedules",
    "/api/limits",
    "/api/dlq",
    "/api/dlq/1",
    "/api/search?q={job}",
)


def inbox_prefix(role: str) -> str:
    """The prefix of ``role``'s reply subjects, the one ``permissions.conf`` lets it receive."""
    return f"_INBOX_{role}"


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set while the block runs, then as it was."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def as_role(role: str) -> contextlib.AbstractContextManager[None]:
    """The environment of ``role``'s processes: its inbox prefix (``NAQ_NATS_INBOX_PREFIX``).
    naq reads its settings when a call is made (a worker or a scheduler when it is built, and
    it keeps them), and caches connections per login, inbox prefix included."""
    return environment(NAQ_NATS_INBOX_PREFIX=inbox_prefix(role))


class PermissionServer:
    """The server started from ``permissions.conf`` and the log it writes."""

    def __init__(self, server: EmbeddedServer, log: Path) -> None:
        self.server = server
        self.log = log

    def url(self, role: str) -> str:
        """The server's URL logging in as ``role``."""
        return f"nats://{role}:{PASSWORDS[role]}@{self.server.host}:{self.server.port}"

    def violations(self) -> list[str]:
        """The permission violations the server logged so far."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if "Violation" in line]


@pytest.fixture(scope="module")
def perm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PermissionServer]:
    """A JetStream server configured by ``deploy/nats/permissions.conf``."""
    log = tmp_path_factory.mktemp("perm") / "nats.log"
    saved = {name: os.environ.get(name) for name in _password_vars()}
    os.environ.update(_password_vars())
    try:
        with EmbeddedServer(extra_args=["-c", str(CONFIG), "-l", str(log)]) as server:
            yield PermissionServer(server, log)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _password_vars() -> dict[str, str]:
    return {f"NAQ_{role.upper()}_PASSWORD": pw for role, pw in PASSWORDS.items()}


@pytest.fixture(scope="module")
def worked_queue(perm_server: PermissionServer) -> Iterator[dict[str, str]]:
    """A queue a producer filled and a worker and a scheduler (both as ``worker``) ran:
    results, a retry, a dead letter, a one-off and a recurring schedule. Returns the ids."""
    before = len(perm_server.violations())
    # the worker publishes events, the dashboard reads them
    with environment(NAQ_EVENTS="1"):
        ids = asyncio.run(_produce_and_work(perm_server, "perm-q"))
    ids["violations"] = "\n".join(perm_server.violations()[before:])
    yield ids


async def _produce_and_work(srv: PermissionServer, queue: str) -> dict[str, str]:
    producer, worker = srv.url("producer"), srv.url("worker")
    try:
        with as_role("producer"):
            one = await naq.enqueue(jobs.add, 1, 2, queue_name=queue, nats_url=producer)
            many = await naq.enqueue_many(
                [(jobs.add, (i, 10), {}) for i in range(3)], queue_name=queue, nats_url=producer
            )
            later = await naq.enqueue_in(0.5, jobs.add, 5, 5, queue_name=queue, nats_url=producer)
            failing = await naq.enqueue(
                jobs.fail, "no", queue_name=queue, nats_url=producer, max_retries=1, retry_delay=0.1
            )
            child = await naq.enqueue(
                jobs.add, 2, 2, queue_name=queue, nats_url=producer, depends_on=[one]
            )
            schedule = await naq.schedule(
                jobs.add, 7, 7, interval=0.5, repeat=2, queue_name=queue, nats_url=producer
            )
        with as_role("worker"):  # both are built here and keep the worker's prefix
            async with (
                running_worker([queue], worker, stop_timeout=WAIT, concurrency=4),
                running_scheduler(worker),
            ):
                with as_role("producer"):
                    assert await job_result(one.job_id, producer) == 3
                    assert await job_result(child.job_id, producer) == 4
                    late_child = await naq.enqueue(
                        jobs.add, 3, 3, queue_name=queue, nats_url=producer, depends_on=[one]
                    )
                    assert await job_result(late_child.job_id, producer) == 6
                    for i, job in enumerate(many):
                        assert await job_result(job.job_id, producer) == i + 10
                    assert await job_result(later.job_id, producer) == 10
                    with pytest.raises(naq.JobExecutionError, match="no"):
                        await job_result(failing.job_id, producer)
                    await _wait_for_runs(schedule.schedule_id, producer, 2)
        return {"queue": queue, "job": one.job_id, "failed": failing.job_id}
    finally:
        await naq.close()


async def job_result(job_id: str, url: str) -> object:
    """The job's result, waited for (pushed by the server)."""
    return await naq.fetch_job_result(job_id, timeout=WAIT, nats_url=url)


async def _wait_for_runs(schedule_id: str, url: str, runs: int) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while asyncio.get_running_loop().time() < deadline:
        found = [s for s in await naq.list_schedules(nats_url=url) if s.schedule_id == schedule_id]
        if not found or found[0].runs >= runs:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"schedule {schedule_id} did not run {runs} times")


# -- each role does its work ------------------------------------------------------------------
def test_producer_worker_and_scheduler_work_with_no_violation(
    perm_server: PermissionServer, worked_queue: dict[str, str]
) -> None:
    assert worked_queue["job"]
    assert worked_queue["violations"] == ""


async def test_the_failed_job_was_retried_and_dead_lettered(
    perm_server: PermissionServer, worked_queue: dict[str, str]
) -> None:
    dashboard = perm_server.url("dashboard")
    with as_role("dashboard"):
        info = await naq.get_job_info(worked_queue["failed"], nats_url=dashboard)
        letters = await naq.list_dead_letters(worked_queue["queue"], nats_url=dashboard)
    assert info.status == naq.JobStatus.FAILED
    assert len(info.attempts) == 2
    assert [d.job_id for d in letters] == [worked_queue["failed"]]


@pytest.fixture
async def dashboard_api(perm_server: PermissionServer) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard app logged in to NATS as the read-only ``dashboard`` user."""
    with as_role("dashboard"):  # the app keeps the settings it is given
        app = create_app(load_settings(perm_server.url("dashboard")), token=TOKEN)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://dashboard",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
    ):
        yield client


async def test_the_read_only_dashboard_reads_everything(
    perm_server: PermissionServer,
    worked_queue: dict[str, str],
    dashboard_api: httpx.AsyncClient,
) -> None:
    before = len(perm_server.violations())
    for template in DASHBOARD_READS:
        path = template.format(q=worked_queue["queue"], job=worked_queue["job"])
        response = await dashboard_api.get(path)
        assert response.status_code == 200, (path, response.text)
    queues = {q["name"]: q for q in (await dashboard_api.get("/api/queues")).json()}
    assert queues[worked_queue["queue"]]["dead"] == 1
    assert perm_server.violations()[before:] == []


async def test_the_read_only_dashboard_reads_the_events(
    perm_server: PermissionServer, worked_queue: dict[str, str]
) -> None:
    before = len(perm_server.violations())
    with as_role("dashboard"):
        dashboard = naq.Queue(nats_url=perm_server.url("dashboard"))
    try:
        conn = await dashboard.connection()
        kinds = [
            event.kind
            async for event in read_events(
                conn, queue=worked_queue["queue"], last=200, follow=False
            )
        ]
    finally:
        await dashboard.close()
    assert "completed" in kinds, kinds
    assert perm_server.violations()[before:] == []


async def test_a_producer_cancels_a_queued_job_but_not_a_scheduled_one(
    perm_server: PermissionServer, queue: str
) -> None:
    """Cancelling a one-off schedule reads and purges it in NAQ_SCHEDULES, which permissions
    cannot narrow to one schedule: an operator's action (docs/security.md)."""
    producer = perm_server.url("producer")
    with as_role("producer"):
        job = await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=producer)
        assert (await naq.get_job_info(job.job_id, nats_url=producer)).status == "pending"
        assert await naq.cancel_job(job.job_id, nats_url=producer)
        assert await naq.get_job_status(job.job_id, nats_url=producer) == naq.JobStatus.CANCELLED
        later = await naq.enqueue_in(600, jobs.add, 1, 1, queue_name=queue, nats_url=producer)
        with pytest.raises(naq.NaqConnectionError, match=r"permissions violation"):
            await naq.cancel_job(later.job_id, nats_url=producer)
        status = await naq.get_job_status(later.job_id, nats_url=producer)
        assert status == naq.JobStatus.SCHEDULED
    with as_role("admin"):
        assert await naq.cancel_job(later.job_id, nats_url=perm_server.url("admin"))
    with as_role("producer"):
        status = await naq.get_job_status(later.job_id, nats_url=producer)
        assert status == naq.JobStatus.CANCELLED


# -- and is refused what it must not do -------------------------------------------------------
@pytest.mark.parametrize("role", ["producer", "dashboard", "worker"])
async def test_only_the_admin_may_purge(
    perm_server: PermissionServer, queue: str, role: str
) -> None:
    with as_role("producer"):
        await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=perm_server.url("producer"))
    with as_role(role), pytest.raises(naq.NaqConnectionError, match="permissions violation"):
        await naq.purge_queue(queue, nats_url=perm_server.url(role))
    with as_role("admin"):
        assert await naq.purge_queue(queue, nats_url=perm_server.url("admin")) == 1


async def test_the_read_only_dashboard_cannot_enqueue(
    perm_server: PermissionServer, queue: str
) -> None:
    with (
        as_role("dashboard"),
        pytest.raises(naq.NaqConnectionError, match="permissions violation") as caught,
    ):
        await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=perm_server.url("dashboard"))
    assert "naq_results" in str(caught.value) or "naq.queue" in str(caught.value)


async def test_the_read_only_dashboard_cannot_cancel_or_pause(
    perm_server: PermissionServer, queue: str
) -> None:
    with as_role("producer"):
        job = await naq.enqueue(
            jobs.add, 1, 1, queue_name=queue, nats_url=perm_server.url("producer")
        )
    dashboard = perm_server.url("dashboard")
    with as_role("dashboard"):
        with pytest.raises(naq.NaqConnectionError, match="permissions violation"):
            await naq.cancel_job(job.job_id, nats_url=dashboard)
        with pytest.raises(naq.NaqConnectionError, match="permissions violation"):
            await naq.pause_queue(queue, nats_url=dashboard)
        status = await naq.get_job_status(job.job_id, nats_url=dashboard)
    assert status == naq.JobStatus.PENDING


@pytest.mark.parametrize(
    ("role", "subject"),
    [
        ("producer", "naq.dlq.{q}"),  # forge a dead letter
        ("producer", "$KV.naq_workers.fake-worker"),  # forge a worker
        ("producer", "$KV.naq_scheduler.leader"),  # take the scheduler's lock
        ("producer", "$JS.API.STREAM.PURGE.NAQ_JOBS"),
        ("producer", "$JS.API.STREAM.DELETE.NAQ_JOBS"),
        ("producer", "$JS.API.STREAM.UPDATE.NAQ_JOBS"),
        ("producer", "$JS.API.CONSUMER.MSG.NEXT.NAQ_JOBS.naq-{q}"),  # take jobs
        ("producer", "$JS.API.CONSUMER.CREATE.NAQ_JOBS.naq-{q}.naq.queue.{q}"),
        ("producer", "$JS.ACK.NAQ_JOBS.naq-{q}.1.1.1.1.0"),
        ("dashboard", "naq.queue.{q}"),
        ("dashboard", "$KV.naq_results.cancel.x"),
        ("dashboard", "$JS.API.CONSUMER.CREATE.NAQ_JOBS.thief.naq.queue.{q}"),
        ("dashboard", "$JS.API.STREAM.MSG.DELETE.NAQ_DLQ"),
        ("worker", "$JS.API.STREAM.DELETE.NAQ_JOBS"),
        ("worker", "$JS.API.STREAM.UPDATE.NAQ_JOBS"),
    ],
)
async def test_the_server_refuses_a_raw_publish(
    perm_server: PermissionServer, queue: str, role: str, subject: str
) -> None:
    """What the naq API never does, tried with a plain NATS client: the server answers with
    a permissions violation naming the subject."""
    errors: list[Exception] = []
    refused = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        refused.set()

    nc = await nats.connect(
        perm_server.url(role),
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix=inbox_prefix(role),
    )
    try:
        target = subject.format(q=queue)
        await nc.publish(target, b"{}")
        await nc.flush()
        await asyncio.wait_for(refused.wait(), WAIT)
    finally:
        await nc.close()
    text = " ".join(str(e) for e in errors).lower()
    assert "permissions violation for publish" in text, text
    assert target.lower() in text, text


@pytest.mark.parametrize(
    ("role", "inbox"),
    [
        ("producer", "_INBOX_worker.>"),  # the worker's replies: pulled jobs, acks
        ("producer", "_INBOX_admin.>"),
        ("producer", "_INBOX.>"),  # NATS' default: no role may read it
        ("dashboard", "_INBOX_admin.>"),
        ("dashboard", "_INBOX.>"),
        ("worker", "_INBOX_producer.>"),
        ("worker", "_INBOX.>"),
        ("admin", "_INBOX_worker.>"),
    ],
)
async def test_a_role_cannot_subscribe_to_the_replies_of_another(
    perm_server: PermissionServer, role: str, inbox: str
) -> None:
    """A plain NATS client of one role (with its own inbox prefix) subscribing to another
    role's reply subjects: the server refuses, as a permissions violation naming them."""
    errors: list[Exception] = []
    refused = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        refused.set()

    nc = await nats.connect(
        perm_server.url(role),
        error_cb=on_error,
        allow_reconnect=False,
        inbox_prefix=inbox_prefix(role),
    )
    try:
        await nc.subscribe(inbox)
        await nc.flush()
        await asyncio.wait_for(refused.wait(), WAIT)
    finally:
        await nc.close()
    text = " ".join(str(e) for e in errors).lower()
    assert f'permissions violation for subscription to "{inbox.lower()}"' in text, text


async def test_a_worker_without_the_permissions_it_needs_stops_at_once_naming_them(
    perm_server: PermissionServer, queue: str
) -> None:
    # the read-only dashboard user may not create the queue's consumer: a refusal that
    # retrying cannot cure, so the worker stops with it (it used to retry for a minute)
    with as_role("producer"):
        await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=perm_server.url("producer"))
    with as_role("dashboard"):
        worker = naq.Worker([queue], nats_url=perm_server.url("dashboard"))
    started = asyncio.get_running_loop().time()
    with pytest.raises(naq.NaqConnectionError, match="permissions violation"):
        await asyncio.wait_for(worker.run(), 30)
    assert asyncio.get_running_loop().time() - started < 15
