"""Programs written for the original naq: its exception names, ``close_sync_connections``
and the calls of its README and examples, run against naq as their users would write them.

The migration page's table is backed by these tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests import jobs

import naq
import naq.errors
import naq.exceptions
import naq.original_api
from conftest import WAIT
from naq.server import EmbeddedServer, free_port

# -- naq.exceptions -----------------------------------------------------------------------------
#: Every exception name of the original naq (all versions of its naq/exceptions.py, and the
#: NAQError alias of its package), with the naq class it must be here.
ORIGINAL_EXCEPTIONS: dict[str, type[Exception]] = {
    "NaqException": naq.errors.NaqException,
    "NAQError": naq.errors.NaqException,
    "ConnectionError": naq.errors.NaqConnectionError,
    "NaqConnectionError": naq.errors.NaqConnectionError,
    "ConfigurationError": naq.errors.ConfigurationError,
    "SerializationError": naq.errors.SerializationError,
    "JobExecutionError": naq.errors.JobExecutionError,
    "JobNotFoundError": naq.errors.JobNotFoundError,
    "ValidationError": naq.errors.ConfigurationError,
    "TypeConversionError": naq.errors.ConfigurationError,
    "LeaderElectionError": naq.errors.NaqConnectionError,
    "LockAcquisitionError": naq.errors.ServerError,
    "LockRenewalError": naq.errors.ServerError,
    "LockReleaseError": naq.errors.ServerError,
    "LockTimeoutError": naq.errors.NaqTimeoutError,
    "LockConflictError": naq.errors.WriteConflictError,
    "LockDataError": naq.errors.SerializationError,
    "LockUpdateError": naq.errors.ServerError,
    "JobResultError": naq.errors.NaqException,
    "JobResultNotFound": naq.errors.JobNotFoundError,
    "JobResultSerializationError": naq.errors.SerializationError,
    "JobResultStorageError": naq.errors.NaqConnectionError,
}


@pytest.mark.parametrize("name", sorted(ORIGINAL_EXCEPTIONS))
def test_every_original_exception_name_imports_as_the_naq_class(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from naq.exceptions import {name}", namespace)
    assert namespace[name] is ORIGINAL_EXCEPTIONS[name]
    assert naq.exceptions.ORIGINAL_NAMES[name] is ORIGINAL_EXCEPTIONS[name]
    assert name in naq.exceptions.__all__


def test_the_original_names_are_all_listed() -> None:
    assert set(naq.exceptions.ORIGINAL_NAMES) == set(ORIGINAL_EXCEPTIONS)


def test_naq_exceptions_re_exports_every_naq_error() -> None:
    for name in naq.errors.__all__:
        assert getattr(naq.exceptions, name) is getattr(naq.errors, name), name
        assert name in naq.exceptions.__all__, name


def test_original_hierarchies_are_kept_where_naq_has_them() -> None:
    e = naq.exceptions
    for lock_error in (e.LockConflictError, e.LockTimeoutError, e.LockAcquisitionError):
        assert issubclass(lock_error, e.LeaderElectionError)
    for result_error in (
        e.JobResultNotFound,
        e.JobResultSerializationError,
        e.JobResultStorageError,
    ):
        assert issubclass(result_error, e.JobResultError)
    for name in ORIGINAL_EXCEPTIONS:
        assert issubclass(getattr(e, name), e.NaqException), name


def test_an_original_except_clause_catches_what_naq_raises(nats_url: str) -> None:
    """The original's multiple_queues_results example: a result not there yet."""
    from naq.exceptions import JobExecutionError, JobNotFoundError

    job = naq.enqueue_sync(jobs.add, 1, 2, queue_name="migration-unrun", nats_url=nats_url)
    with pytest.raises(JobNotFoundError):
        naq.fetch_job_result_sync(job.job_id, nats_url=nats_url)
    assert not issubclass(JobNotFoundError, JobExecutionError)


def test_a_bad_argument_is_caught_as_the_original_validation_error() -> None:
    from naq.exceptions import ValidationError

    with pytest.raises(ValidationError):
        naq.Queue("no spaces allowed")


# -- close_sync_connections ---------------------------------------------------------------------
class MonitoredServer:
    """A JetStream server with its monitoring port on, to count its client connections."""

    def __init__(self) -> None:
        self.monitor_port = free_port()
        self.server = EmbeddedServer(extra_args=["-m", str(self.monitor_port)])

    @property
    def url(self) -> str:
        return self.server.url

    def connections(self) -> list[str]:
        """The names of the clients connected now (``/connz``)."""
        address = f"http://127.0.0.1:{self.monitor_port}/connz"
        with urllib.request.urlopen(address, timeout=5) as answer:
            found = json.load(answer)
        return [str(conn.get("name", "")) for conn in found.get("connections") or []]

    def wait_for_connections(self, check: Callable[[int], bool]) -> list[str]:
        """Poll until ``check(number of connections)`` holds; the names then."""
        deadline = time.monotonic() + WAIT
        while True:
            names = self.connections()
            if check(len(names)):
                return names
            if time.monotonic() > deadline:
                raise AssertionError(f"connections now: {names}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def monitored() -> Iterator[MonitoredServer]:
    server = MonitoredServer()
    with server.server:
        yield server


@pytest.fixture
def _closed_after(monitored: MonitoredServer) -> Iterator[None]:
    yield
    naq.close_sync_connections()


@pytest.mark.usefixtures("_closed_after")
def test_close_sync_connections_closes_them_all_and_the_next_call_reconnects(
    monitored: MonitoredServer,
) -> None:
    url = monitored.url
    naq.enqueue_sync(jobs.add, 1, 2, queue_name="migration-close", nats_url=url)  # blocking
    naq.list_queues_sync(nats_url=url)  # the shared loop's connection
    client = naq.SyncClient(nats_url=url)
    client.connect()
    names = monitored.wait_for_connections(lambda n: n >= 3)
    assert "naq-sync-client" in names and "naq-client" in names, names

    naq.close_sync_connections()

    assert monitored.wait_for_connections(lambda n: n == 0) == []
    job = naq.enqueue_sync(jobs.add, 3, 4, queue_name="migration-close", nats_url=url)
    assert naq.get_job_status_sync(job.job_id, nats_url=url) == naq.JobStatus.PENDING
    assert client.get_job_status(job.job_id) == naq.JobStatus.PENDING
    monitored.wait_for_connections(lambda n: n >= 3)


@pytest.mark.usefixtures("_closed_after")
def test_close_sync_connections_takes_the_original_nats_url_argument(
    monitored: MonitoredServer,
) -> None:
    naq.enqueue_sync(jobs.add, 1, 2, queue_name="migration-close", nats_url=monitored.url)
    monitored.wait_for_connections(lambda n: n >= 1)
    naq.close_sync_connections(nats_url=monitored.url)
    monitored.wait_for_connections(lambda n: n == 0)
    naq.close_sync_connections()  # nothing open: a no-op


@pytest.mark.usefixtures("_closed_after")
def test_close_sync_connections_closes_a_sync_client_dropped_without_close(
    monitored: MonitoredServer,
) -> None:
    def forget_a_client() -> None:
        naq.SyncClient(nats_url=monitored.url).connect()

    forget_a_client()
    gc.collect()
    assert monitored.wait_for_connections(lambda n: n >= 1) == ["naq-sync-client"]
    naq.close_sync_connections()
    monitored.wait_for_connections(lambda n: n == 0)


def test_close_sync_connections_before_any_call_starts_nothing() -> None:
    script = (
        "import threading, naq; naq.close_sync_connections(); "
        "print(sorted(t.name for t in threading.enumerate()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert done.stdout.strip() == "['MainThread']", done.stderr


def test_close_sync_connections_is_exported() -> None:
    assert "close_sync_connections" in naq.__all__
    from naq import close_sync_connections

    assert close_sync_connections is naq.sync.close_sync_connections


# -- the original's documented calls ------------------------------------------------------------
@pytest.fixture
def default_url(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The original's calls without ``nats_url=`` reach the test server (``NAQ_NATS_URL``)."""
    monkeypatch.setenv("NAQ_NATS_URL", nats_url)
    return nats_url


def test_readme_and_examples_enqueue_calls_run_unchanged(
    default_url: str, worker_thread: Callable[..., contextlib.AbstractContextManager[naq.Worker]]
) -> None:
    """README (enqueue_sync), multiple_queues_results (queue_name=), job_retries
    (max_retries=, retry_delay=[...]), job_dependencies (depends_on=[Job, Job])."""
    queue, nats_url = "data_processing", default_url
    plain = naq.enqueue_sync(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
    retried = naq.enqueue_sync(
        jobs.add, 2, 3, queue_name=queue, nats_url=nats_url, max_retries=3, retry_delay=[2, 4, 6]
    )
    assert (retried.max_retries, retried.retry_delay) == (3, (2.0, 4.0, 6.0))
    timed = naq.enqueue_sync(jobs.add, 4, 5, queue_name=queue, timeout=30, result_ttl=60)
    assert (timed.timeout, timed.result_ttl) == (30.0, 60.0)
    final = naq.enqueue_sync(jobs.add, 5, 6, queue_name=queue, depends_on=[plain, retried])
    assert final.depends_on == (plain.job_id, retried.job_id)
    with worker_thread([queue], nats_url):
        results = [
            naq.fetch_job_result_sync(job.job_id, timeout=WAIT, nats_url=nats_url)
            for job in (plain, retried, timed, final)
        ]
    assert results == [3, 5, 9, 11]


def test_readme_scheduling_calls_run_unchanged(default_url: str) -> None:
    """README's enqueue_at_sync / enqueue_in_sync; recurring_jobs' schedule_sync; the
    schedule controls with the original's positional job id."""
    now = datetime.datetime.now(datetime.UTC)
    job_at = naq.enqueue_at_sync(now + datetime.timedelta(minutes=5), jobs.add, 1, 2)
    job_in = naq.enqueue_in_sync(datetime.timedelta(minutes=1), jobs.add, 1, 2, max_retries=2)
    assert naq.get_job_status_sync(job_at.job_id) == naq.JobStatus.SCHEDULED
    assert naq.get_job_status_sync(job_in.job_id) == naq.JobStatus.SCHEDULED
    every = naq.schedule_sync(
        jobs.add, 1, 2, interval=datetime.timedelta(seconds=15), repeat=5, nats_url=default_url
    )
    naq.schedule_sync(jobs.add, 1, 2, cron="* * * * *", repeat=None, max_retries=1)
    assert naq.pause_scheduled_job_sync(every.schedule_id).status == "paused"
    assert naq.resume_scheduled_job_sync(every.schedule_id).status == "active"
    assert naq.modify_scheduled_job_sync(every.schedule_id, interval=30, repeat=3).repeat == 3
    assert naq.cancel_scheduled_job_sync(every.schedule_id) is True
    assert naq.cancel_scheduled_job_sync(job_at.job_id) is True


def test_sync_client_example_runs_unchanged(nats_url: str) -> None:
    """sync_client_demo: SyncClient(nats_url=...) as a context manager, queue_name= per call."""
    with naq.SyncClient(nats_url=nats_url) as client:
        job = client.enqueue(jobs.echo_kwargs, data_id=1, queue_name="batch_jobs")
        later = client.enqueue_in(datetime.timedelta(minutes=1), jobs.add, 1, 2)
        assert job.queue_name == "batch_jobs" and later.job_id
        assert client.purge_queue(queue_name="batch_jobs") == 1


def test_setup_logging_takes_the_original_level_argument() -> None:
    naq.setup_logging(level="INFO")
    naq.setup_logging()


# -- the original's top-level names naq does not have -------------------------------------------
@pytest.mark.parametrize("name", sorted(naq.original_api.REPLACED))
def test_an_original_name_imports_and_its_call_says_what_to_write_instead(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from naq import {name}", namespace)
    stand_in = namespace[name]
    instead = naq.original_api.REPLACED[name]
    with pytest.raises(naq.NaqException) as called:
        stand_in("nats://127.0.0.1:4222")
    assert str(called.value).startswith(f"naq.{name} is the original naq's")
    assert instead in str(called.value) and "naq." in instead
    with pytest.raises(naq.NaqException, match="naq has no such name"):
        stand_in.IDLE  # noqa: B018 - an original constant's attribute
    assert name not in naq.__all__


def test_original_names_naq_has_under_another_name() -> None:
    from naq import DEFAULT_NATS_URL, DEFAULT_QUEUE_NAME, NAQError, RetryDelayType, disconnect

    assert NAQError is naq.NaqException
    assert disconnect is naq.close
    assert DEFAULT_NATS_URL == "nats://127.0.0.1:4222"
    assert DEFAULT_QUEUE_NAME == "default"
    assert RetryDelayType is naq.original_api.RetryDelayType


def test_the_original_default_queue_name_follows_naq_default_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NAQ_DEFAULT_QUEUE", "naq_default_queue")
    from naq import DEFAULT_QUEUE_NAME

    assert DEFAULT_QUEUE_NAME == "naq_default_queue"


async def test_original_disconnect_closes_the_async_helpers_connections(
    monitored: MonitoredServer,
) -> None:
    await naq.enqueue(jobs.add, 1, 2, queue_name="migration-unrun", nats_url=monitored.url)
    assert "naq-client" in monitored.connections()
    await naq.disconnect()
    await asyncio.to_thread(monitored.wait_for_connections, lambda n: n == 0)


def test_other_unknown_names_stay_unknown() -> None:
    assert not hasattr(naq, "no_such_name")
    with pytest.raises(ImportError):
        exec("from naq import no_such_name", {})


# -- the original's options naq has no use for, and its attribute names --------------------------
def test_original_worker_options_work_or_say_what_to_write_instead(tmp_path: Any) -> None:
    (tmp_path / "src").mkdir()
    worker = naq.Worker(["q"], nats_url="nats://127.0.0.1:1", module_paths=str(tmp_path / "src"))
    assert worker.module_paths == (str(tmp_path / "src"),)  # one path, not one per character
    with pytest.raises(naq.ConfigurationError, match=r"worker_ttl=30 .* heartbeat_interval="):
        naq.Worker(["q"], worker_ttl=30)


def test_original_queue_default_timeout_says_to_pass_timeout_per_job() -> None:
    with pytest.raises(naq.ConfigurationError, match=r"pass timeout= .* to each enqueue"):
        naq.Queue("q", default_timeout=60)


def test_original_modify_changes_are_taken_under_their_original_names(default_url: str) -> None:
    every = naq.schedule_sync(jobs.add, 1, 2, interval=60, schedule_id="migration-modify")
    assert every.id == every.job_id == "migration-modify"
    due = time.time() + 3600
    changed = naq.modify_scheduled_job_sync(
        every.schedule_id, interval_seconds=30, scheduled_timestamp_utc=due
    )
    assert changed.interval == 30
    assert changed.next_run is not None and abs(changed.next_run.timestamp() - due) < 1
    with pytest.raises(naq.ConfigurationError, match=r"unknown change.*'intervall'"):
        naq.modify_scheduled_job_sync(every.schedule_id, intervall=5)
    with pytest.raises(naq.ConfigurationError, match="scheduled_timestamp_utc must be epoch"):
        naq.modify_scheduled_job_sync(every.schedule_id, scheduled_timestamp_utc=1e300)
    (listed,) = [s for s in naq.list_schedules_sync() if s["job_id"] == every.job_id]
    assert listed["interval_seconds"] == 30
    assert naq.cancel_scheduled_job_sync(every.job_id) is True


def test_original_job_id_attribute_name(default_url: str) -> None:
    job = naq.enqueue_sync(jobs.add, 1, 2, queue_name="migration-unrun")
    assert job.id == job.job_id
