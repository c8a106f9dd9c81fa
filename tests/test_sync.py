"""The blocking API (``*_sync`` helpers and ``SyncClient``), called from plain ``def`` tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests import jobs

import naq
import naq.api
import naq.sync
import naq.transport.blocking
from conftest import WAIT
from naq import JobStatus
from naq.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def _shared_connection(nats_url: str) -> Any:
    return _shared_connections()[nats_url]


def _shared_connections() -> dict[str, Any]:
    """The sync layer's shared connections by URL (each cached under its login)."""
    loop = naq.sync._runner.loop
    assert loop is not None, "the sync layer has not started its loop"
    return {login[0][0]: conn for login, conn in naq.api._connections[loop].items()}


def _thread_client(nats_url: str) -> naq.transport.blocking.BlockingClient:
    return naq.transport.blocking.for_thread(load_settings(nats_url))


def test_enqueue_sync_1000_times_reuses_one_connection(nats_url: str, queue: str) -> None:
    first = naq.enqueue_sync(jobs.add, 0, 0, queue_name=queue, nats_url=nats_url)
    client = _thread_client(nats_url)
    sock = client._sock
    assert sock is not None  # enqueue_sync publishes on this thread's blocking connection

    ids = [first.job_id]
    for i in range(1, 1000):
        job = naq.enqueue_sync(jobs.add, i, i, queue_name=queue, nats_url=nats_url)
        assert job.queue_name == queue
        ids.append(job.job_id)

    assert len(set(ids)) == 1000
    assert _thread_client(nats_url) is client
    assert client._sock is sock  # the very same socket: no reconnect, no second connection
    # every one of them is stored, with its pending record
    assert naq.get_job_status_sync(ids[-1], nats_url=nats_url) == JobStatus.PENDING
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1000


def test_enqueue_sync_from_several_threads(nats_url: str, queue: str) -> None:
    naq.enqueue_sync(jobs.add, 0, 0, queue_name=queue, nats_url=nats_url)
    errors: list[BaseException] = []
    ids: list[str] = []
    clients: set[int] = set()

    def produce() -> None:
        try:
            for i in range(50):
                ids.append(
                    naq.enqueue_sync(jobs.add, i, 1, queue_name=queue, nats_url=nats_url).job_id
                )
            clients.add(id(_thread_client(nats_url)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert errors == []
    assert len(set(ids)) == 200
    assert len(clients) == 4  # one blocking connection per thread, never shared
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 201


def test_other_sync_helpers_share_one_loop_connection(nats_url: str, queue: str) -> None:
    job = naq.enqueue_sync(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
    assert naq.get_job_status_sync(job.job_id, nats_url=nats_url) == JobStatus.PENDING
    conn = _shared_connection(nats_url)
    errors: list[BaseException] = []

    def look() -> None:
        try:
            for _ in range(20):
                naq.get_job_status_sync(job.job_id, nats_url=nats_url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert _shared_connection(nats_url) is conn
    assert list(_shared_connections()) == [nats_url]
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1


def test_sync_client_enqueue_fetch_purge_and_list_workers(
    nats_url: str, queue: str, worker_thread: Any
) -> None:
    idle = f"{queue}-idle"
    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        # enqueued before the worker starts (see test_producer's fresh-connection race test)
        job = client.enqueue(jobs.add, 2, 3)
        assert job.queue_name == queue
        with worker_thread([queue], nats_url, concurrency=2) as worker:
            assert client.fetch_job_result(job.job_id, timeout=WAIT) == 5
            assert client.get_job_status(job.job_id) == JobStatus.COMPLETED
            assert client.get_job_info(job.job_id).worker_id == worker.worker_id

            failing = client.enqueue(jobs.fail, "sync boom")
            with pytest.raises(naq.JobExecutionError, match="sync boom"):
                client.fetch_job_result(failing.job_id, timeout=WAIT)

            with pytest.raises(naq.JobNotFoundError):
                client.fetch_job_result("0" * 32)

            listed = {w.worker_id: w for w in client.list_workers()}
            assert worker.worker_id in listed
            assert listed[worker.worker_id].queues == [queue]

            for i in range(3):
                client.enqueue(jobs.add, i, i, queue_name=idle)
            assert client.purge_queue(idle) == 3
            assert client.purge_queue(idle) == 0

            many = client.enqueue_many([(jobs.add, (i, 1)) for i in range(5)])
            assert [client.fetch_job_result(j.job_id, timeout=WAIT) for j in many] == [
                1,
                2,
                3,
                4,
                5,
            ]


def test_sync_client_reconnects_after_close(nats_url: str, queue: str) -> None:
    client = naq.SyncClient(nats_url=nats_url, queue_name=queue)
    with client:
        first = client.enqueue(jobs.add, 1, 1)
    with client:
        second = client.enqueue(jobs.add, 2, 2)
    assert first.job_id != second.job_id
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 2


def test_sync_twins(nats_url: str, queue: str, worker_thread: Any) -> None:
    idle = f"{queue}-idle"
    # enqueued before the worker starts (see test_producer's fresh-connection race test)
    job = naq.enqueue_sync(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
    with worker_thread([queue], nats_url) as worker:
        assert naq.fetch_job_result_sync(job.job_id, timeout=WAIT, nats_url=nats_url) == 3
        assert naq.get_job_status_sync(job.job_id, nats_url=nats_url) == JobStatus.COMPLETED
        info = naq.get_job_info_sync(job.job_id, nats_url=nats_url)
        assert info.status == JobStatus.COMPLETED
        assert info.worker_id == worker.worker_id

        many = naq.enqueue_many_sync(
            [(jobs.add, (i, 10)) for i in range(3)], queue_name=queue, nats_url=nats_url
        )
        results = [
            naq.fetch_job_result_sync(j.job_id, timeout=WAIT, nats_url=nats_url) for j in many
        ]
        assert results == [10, 11, 12]

        workers = naq.list_workers_sync(nats_url=nats_url)
        assert worker.worker_id in [w.worker_id for w in workers]
        queues = {q.name: q for q in naq.list_queues_sync(nats_url=nats_url)}
        assert queue in queues

    for i in range(4):
        naq.enqueue_sync(jobs.add, i, i, queue_name=idle, nats_url=nats_url)
    assert naq.purge_queue_sync(idle, nats_url=nats_url) == 4
    assert naq.purge_queue_sync(idle, nats_url=nats_url) == 0

    with pytest.raises(naq.JobNotFoundError):
        naq.fetch_job_result_sync("f" * 32, nats_url=nats_url)
    with pytest.raises(naq.JobNotFoundError):
        naq.get_job_status_sync("f" * 32, nats_url=nats_url)


def test_sync_errors_are_raised_in_the_calling_thread(nats_url: str) -> None:
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        naq.enqueue_sync(jobs.add, 1, 2, queue_name="a.b", nats_url=nats_url)
    with pytest.raises(naq.SerializationError):
        naq.enqueue_sync(jobs.echo, jobs.Opaque(), queue_name="ok", nats_url=nats_url)
    with pytest.raises(naq.NaqConnectionError, match="cannot reach NATS at"):
        naq.enqueue_sync(jobs.add, 1, 2, queue_name="ok", nats_url="nats://127.0.0.1:1")
    # and the layer still works afterwards
    job = naq.enqueue_sync(jobs.add, 1, 2, queue_name="ok", nats_url=nats_url)
    assert naq.get_job_status_sync(job.job_id, nats_url=nats_url) == JobStatus.PENDING


def test_sync_client_purge_of_empty_queue_name_is_refused(nats_url: str, queue: str) -> None:
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        naq.SyncClient(nats_url=nats_url, queue_name="")
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        naq.purge_queue_sync("", nats_url=nats_url)
    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        client.enqueue(jobs.add, 1, 1)
        with pytest.raises(naq.ConfigurationError, match="queue name"):
            client.enqueue(jobs.add, 1, 1, queue_name="")
        try:
            with pytest.raises(naq.ConfigurationError, match="queue name"):
                client.purge_queue("")
        finally:
            assert client.purge_queue(queue) == 1, "purge_queue('') purged the client's queue"


_NEVER_CLOSED = """
import sys
import naq
from tests import jobs

url, queue = sys.argv[1:3]
client = naq.SyncClient(nats_url=url, queue_name=queue)  # never closed
job = client.enqueue(jobs.add, 1, 2)
print(client.get_job_status(job.job_id))
print(naq.get_job_status_sync(job.job_id, nats_url=url))
print(client.list_schedules() is not None)
with naq.SyncClient(nats_url=url, queue_name=queue) as closed:  # closed, for contrast
    print(closed.get_job_status(job.job_id))
"""


def test_an_unclosed_sync_client_exits_quietly(nats_url: str, queue: str) -> None:
    """At exit every open SyncClient and shared connection is closed before the loop stops:
    no "Task was destroyed but it is pending", no "never awaited", no traceback."""
    script = textwrap.dedent(_NEVER_CLOSED)
    done = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning", "-c", script, nats_url, queue],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.split() == ["pending", "pending", "True", "pending"]
    for noise in ("Task was destroyed", "never awaited", "Traceback", "Exception ignored"):
        assert noise not in done.stderr, done.stderr
    assert done.stderr == ""
    assert done.returncode == 0
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1


def test_sync_enqueue_defers_a_dependent_job(nats_url: str, queue: str) -> None:
    from tests.dep_jobs import step

    parent = naq.enqueue_sync(step, "p", queue_name=queue, nats_url=nats_url)
    child = naq.enqueue_sync(step, "c", depends_on=parent, queue_name=queue, nats_url=nats_url)
    status = naq.get_job_status_sync(child.job_id, nats_url=nats_url)
    assert status == naq.JobStatus.DEFERRED
    with naq.SyncClient(nats_url=nats_url) as client:
        other = client.enqueue(step, "o", depends_on=[child], queue_name=queue)
        assert client.get_job_info(other.job_id).waiting_on == [child.job_id]
