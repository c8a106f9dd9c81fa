"""``enqueue_sync`` on the calling thread's blocking connection (``naq.blocking``): reconnects,
forks, logins, idle re-opens and errors, against real servers."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from tests import jobs

import naq
import naq.transport.blocking
from naq.server import EmbeddedServer
from naq.settings import load_settings


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    yield
    naq.run_sync(naq.close())


def _client(url: str) -> naq.transport.blocking.BlockingClient:
    return naq.transport.blocking.for_thread(load_settings(url))


def test_enqueue_sync_reconnects_after_a_server_restart(tmp_path: object) -> None:
    server = EmbeddedServer(store_dir=str(tmp_path)).start()
    try:
        first = naq.enqueue_sync(jobs.add, 1, 1, queue_name="restart", nats_url=server.url)
        old_sock = _client(server.url)._sock
        server.close()
        server.start()  # same port, same store
        second = naq.enqueue_sync(jobs.add, 2, 2, queue_name="restart", nats_url=server.url)
        assert _client(server.url)._sock is not old_sock  # a fresh connection
        for job in (first, second):
            assert naq.get_job_status_sync(job.job_id, nats_url=server.url) == "pending"
        assert naq.purge_queue_sync("restart", nats_url=server.url) == 2
    finally:
        naq.run_sync(naq.close())
        server.close()


def test_enqueue_sync_with_the_server_gone_raises_one_clear_error(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_PUBLISH_DEADLINE", "2")  # re-sends for 2 s, not 30, then gives up
    server = EmbeddedServer(store_dir=str(tmp_path)).start()
    url = server.url
    try:
        naq.enqueue_sync(jobs.add, 1, 1, queue_name="gone", nats_url=url)
    finally:
        naq.run_sync(naq.close())
        server.close()
    with pytest.raises(naq.NaqConnectionError, match="cannot reach NATS at"):
        naq.enqueue_sync(jobs.add, 1, 1, queue_name="gone", nats_url=url)


@pytest.mark.parametrize(
    ("server_args", "credentials"),
    [(["--user", "ann", "--pass", "s3cret"], "ann:s3cret@"), (["--auth", "tok3n"], "tok3n@")],
    ids=["user-password", "token"],
)
def test_enqueue_sync_logs_in_with_the_url_credentials(
    tmp_path: object, server_args: list[str], credentials: str
) -> None:
    server = EmbeddedServer(store_dir=str(tmp_path), extra_args=server_args).start()
    url = f"nats://{credentials}127.0.0.1:{server.port}"
    try:
        job = naq.enqueue_sync(jobs.add, 1, 1, queue_name="auth", nats_url=url)
        assert naq.get_job_status_sync(job.job_id, nats_url=url) == "pending"
        # a wrong password is refused with the login error, on the blocking path as well
        naq.transport.blocking.for_thread(load_settings(url)).close()
        bad = naq.transport.blocking.BlockingClient(
            load_settings(f"nats://x:y@127.0.0.1:{server.port}")
        )
        with pytest.raises(naq.NaqConnectionError, match="refused the login"):
            bad.request_many([("naq.queue.auth", None, b"{}")])
    finally:
        naq.run_sync(naq.close())
        server.close()


def test_a_forked_child_opens_its_own_connection(nats_url: str, queue: str) -> None:
    parent_job = naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    parent_sock = _client(nats_url)._sock
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: publish, report the id, exit without running pytest's teardown
        code = 1
        try:
            client = naq.transport.blocking.for_thread(load_settings(nats_url))
            replies = client.request_many([(f"naq.queue.{queue}", None, b"not a job")])
            os.write(write_fd, b"ok" if replies[0].error() is None else b"refused")
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    assert os.read(read_fd, 10) == b"ok"
    os.close(read_fd)
    assert status == 0
    # the parent's connection was not disturbed by the child
    again = naq.enqueue_sync(jobs.add, 2, 2, queue_name=queue, nats_url=nats_url)
    assert _client(nats_url)._sock is parent_sock
    assert again.job_id != parent_job.job_id
    # the parent's two jobs and the child's message are all in the stream
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 3


def test_an_idle_connection_is_reopened_before_use(
    nats_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    before = _client(nats_url)._sock
    monkeypatch.setattr(naq.transport.blocking, "IDLE_REOPEN", 0.0)
    naq.enqueue_sync(jobs.add, 2, 2, queue_name=queue, nats_url=nats_url)
    assert _client(nats_url)._sock is not before
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 2


def test_a_custom_job_id_still_runs_once(nats_url: str, queue: str) -> None:
    first = naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url, job_id="only-1")
    second = naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url, job_id="only-1")
    assert first.job_id == second.job_id == "only-1"
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1


def test_bad_input_raises_before_anything_is_sent(nats_url: str, queue: str) -> None:
    naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    with pytest.raises(naq.SerializationError):
        naq.enqueue_sync(jobs.add, object(), 1, queue_name=queue, nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError):
        naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url, max_retries=-1)
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1


def test_each_thread_has_its_own_connection(nats_url: str, queue: str) -> None:
    socks: list[object] = []

    def produce() -> None:
        naq.enqueue_sync(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
        socks.append(_client(nats_url)._sock)

    threads = [threading.Thread(target=produce) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len({id(s) for s in socks}) == 3 and all(s is not None for s in socks)
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 3
