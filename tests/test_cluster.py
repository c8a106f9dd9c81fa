"""naq on a 3-node JetStream cluster: replicas, URL failover of a connected client, the
publish deadline, the replicas errors, ``naq server`` cluster options. The slower tests are
marked ``cluster`` (``make test-cluster``), like the failover runs in
``test_cluster_failover.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from loguru import logger

import naq
from cli_run import ROOT, naq_cli
from helpers import queue_worker
from naq.cluster import NatsCluster
from naq.constants import JOBS_STREAM, RESULTS_BUCKET
from naq.errors import ConfigurationError, PublishNotConfirmedError
from naq.server import EmbeddedServer, free_port
from naq.settings import Settings, load_settings

WAIT = 30.0


def replicated(url: str, replicas: int = 3) -> Settings:
    """Settings for ``url`` with ``replicas`` replicas."""
    return dataclasses.replace(load_settings(url), replicas=replicas)


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    """A fresh 3-node cluster for one test (starting one takes a fraction of a second)."""
    with NatsCluster(3) as found:
        yield found


async def replicas_of(url: str, stream: str) -> int:
    nc = await nats.connect(url.split(","))
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.config.num_replicas or 1)
    finally:
        await nc.close()


async def test_jobs_run_on_three_replicas_and_a_client_fails_over(
    cluster: NatsCluster, queue: str
) -> None:
    settings = replicated(cluster.url)
    async with naq.Queue(queue, settings=settings) as q:
        job = await q.enqueue("tests.jobs:add", 1, 2)
        async with queue_worker(queue, cluster.url, settings=settings):
            assert await q.fetch_job_result(job.job_id, timeout=WAIT) == 3
        assert await replicas_of(cluster.url, JOBS_STREAM) == 3
        assert await replicas_of(cluster.url, f"KV_{RESULTS_BUCKET}") == 3
        # the node the producer is connected to dies: it goes on through another
        conn = await q.connection()
        connected = conn.nc.connected_url
        assert connected is not None
        port = connected.port
        number = next(n for n, node in enumerate(cluster.nodes, 1) if node.port == port)
        cluster.kill(number)
        again = await q.enqueue("tests.jobs:add", 2, 3)
        assert await q.get_job_status(again.job_id) == naq.JobStatus.PENDING
        assert conn.nc.connected_url is not None
        assert conn.nc.connected_url.port != port


@pytest.mark.cluster
async def test_existing_single_replica_storage_is_raised_to_three(
    cluster: NatsCluster, queue: str
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO")
    try:
        async with naq.Queue(queue, settings=replicated(cluster.url, 1)) as q:
            await q.enqueue("tests.jobs:add", 1, 1)
        assert await replicas_of(cluster.url, JOBS_STREAM) == 1
        async with naq.Queue(queue, settings=replicated(cluster.url, 3)) as q:
            await q.enqueue("tests.jobs:add", 1, 1)
    finally:
        logger.remove(sink)
    assert await replicas_of(cluster.url, JOBS_STREAM) == 3
    assert await replicas_of(cluster.url, f"KV_{RESULTS_BUCKET}") == 3
    assert any(f"stream {JOBS_STREAM} now has 3 replicas (had 1)" in line for line in lines)
    assert any(f"bucket {RESULTS_BUCKET} now has 3 replicas (had 1)" in line for line in lines)


async def test_more_replicas_than_servers_is_one_clear_error(
    cluster: NatsCluster, queue: str
) -> None:
    async with naq.Queue(queue, settings=replicated(cluster.url, 5)) as q:
        with pytest.raises(ConfigurationError, match=r"5 replicas.*NAQ_REPLICAS"):
            await q.enqueue("tests.jobs:add", 1, 1)


async def test_three_replicas_on_a_single_server_is_one_clear_error(queue: str) -> None:
    with EmbeddedServer() as server:
        async with naq.Queue(queue, settings=replicated(server.url, 3)) as q:
            with pytest.raises(ConfigurationError, match=r"single server.*NAQ_REPLICAS") as err:
                await q.enqueue("tests.jobs:add", 1, 1)
    assert "3 replicas" in str(err.value)


# -- naq server: one node of a cluster, or a local cluster ------------------------------------
def free_run(count: int, gap: int = 0) -> int:
    """A port P with P..P+count-1 (and P+gap.. the same, with ``gap``) all free just now."""
    for _ in range(50):
        base = free_port()
        wanted = [base + n for n in range(count)]
        if gap:
            wanted += [base + gap + n for n in range(count)]
        try:
            for port in wanted:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise AssertionError("no run of free ports")


def naq_server(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    return subprocess.Popen(
        [sys.executable, "-m", "naq", "server", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def enqueue_on_three_replicas(url: str, queue: str) -> None:
    """Storage with 3 replicas can be created (so the servers form a cluster)."""
    deadline = time.monotonic() + WAIT
    await jetstream_answers(url, deadline)
    while True:  # the nodes are starting and electing a meta leader
        try:
            async with naq.Queue(queue, settings=replicated(url)) as q:
                await q.enqueue("tests.jobs:add", 1, 2)
            break
        except naq.NaqException:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    assert await replicas_of(url, JOBS_STREAM) == 3


async def jetstream_answers(url: str, deadline: float) -> None:
    """Wait until the servers are up and JetStream answers (a meta leader was elected)."""
    while True:
        try:
            nc = await nats.connect(url.split(","), connect_timeout=0.5, allow_reconnect=False)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        try:
            while time.monotonic() < deadline:
                try:
                    reply = await nc.request("$JS.API.INFO", b"", timeout=0.5)
                except nats.errors.Error:
                    await asyncio.sleep(0.1)
                    continue
                if b'"error"' not in reply.data:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("JetStream did not answer")
        finally:
            await nc.close()


def stop(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(15))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
        if proc.stderr:
            proc.stderr.close()
    return codes


@pytest.mark.cluster
async def test_naq_server_cluster_nodes_runs_a_local_cluster(tmp_path: Path, queue: str) -> None:
    port = free_run(3, gap=2000)
    proc = naq_server("--cluster-nodes", "3", "-p", str(port), "--store-dir", str(tmp_path))
    try:
        url = ",".join(f"nats://127.0.0.1:{port + n}" for n in range(3))
        await enqueue_on_three_replicas(url, queue)
        assert {p.name for p in await asyncio.to_thread(tmp_path.iterdir)} == {"n1", "n2", "n3"}
    finally:
        codes = stop([proc])
    assert codes == [0]
    for n in range(3):  # every node stopped with the command
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port + n))


@pytest.mark.cluster
async def test_naq_server_runs_one_node_of_a_cluster(tmp_path: Path, queue: str) -> None:
    clients = free_run(3)
    routes = [free_port() for _ in range(3)]
    procs = []
    for n in range(3):
        others = ",".join(f"nats://127.0.0.1:{p}" for p in routes if p != routes[n])
        procs.append(
            naq_server(
                "-p",
                str(clients + n),
                "--store-dir",
                str(tmp_path / f"n{n + 1}"),
                "--name",
                f"n{n + 1}",
                "--cluster",
                f"nats://127.0.0.1:{routes[n]}",
                "--routes",
                others,
            )
        )
    try:
        url = ",".join(f"nats://127.0.0.1:{clients + n}" for n in range(3))
        await enqueue_on_three_replicas(url, queue)
    finally:
        codes = stop(procs)
    assert codes == [0, 0, 0]


def test_naq_server_cluster_options_need_a_name_and_a_cluster_url() -> None:
    result = naq_cli("server", "--routes", "nats://127.0.0.1:6222", timeout=30)
    assert result.code == 1
    assert result.error_lines == [
        "error: a cluster node needs --name and --cluster (and --routes to the other nodes)"
    ]
    bad = naq_cli("server", "--name", "n1", "--cluster", "127.0.0.1:6222", timeout=30)
    assert bad.code != 0
    assert "must look like nats://<host>:<port>" in bad.stderr


async def test_an_enqueue_nobody_confirms_fails_at_the_publish_deadline(queue: str) -> None:
    with EmbeddedServer() as server:
        settings = dataclasses.replace(load_settings(server.url), publish_deadline=1.0)
        async with naq.Queue(queue, settings=settings) as q:
            await q.enqueue("tests.jobs:add", 1, 1)
            server.stop()
            started = time.monotonic()
            with pytest.raises(PublishNotConfirmedError) as err:
                await q.enqueue("tests.jobs:add", 2, 2)
            assert time.monotonic() - started < 5
    text = str(err.value)
    assert "may not be stored" in text
    assert "enqueue again with the same job_id" in text
    assert "within 1 s of retries with the same message id" in text
