"""naq on a 3-node JetStream cluster (quick checks; the failover runs are in
``test_cluster_failover.py``): replicas, URL failover of a connected client, publishes
retried with the same message id while a stream has no leader, and the replicas errors."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import nats
import pytest
from loguru import logger

import naq
from helpers import queue_worker
from naq.cluster import NatsCluster
from naq.constants import JOBS_STREAM, RESULTS_BUCKET
from naq.errors import ConfigurationError
from naq.server import EmbeddedServer
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
            assert await q.fetch_job_result(again.job_id, timeout=WAIT) == 5
            assert conn.nc.connected_url is not None
            assert conn.nc.connected_url.port != port


async def test_enqueue_waits_out_a_stream_without_leader(cluster: NatsCluster, queue: str) -> None:
    """With two of three nodes down the jobs stream has no leader ("no responders"): an
    enqueue is re-sent with the same id until a node is back, and then succeeds once."""
    settings = replicated(cluster.url)
    async with naq.Queue(queue, settings=settings) as q:
        await q.enqueue("tests.jobs:add", 0, 0)  # storage set up
        survivor = cluster.stream_leader(JOBS_STREAM) or 1
        others = [n for n in (1, 2, 3) if n != survivor]
        for number in others:
            cluster.kill(number)
        await asyncio.sleep(0.5)

        async def bring_back() -> None:
            await asyncio.sleep(1.5)
            await asyncio.to_thread(cluster.restart, others[0])

        started = time.monotonic()
        back = asyncio.create_task(bring_back())
        jobs = await q.enqueue_many([("tests.jobs:add", (n, n), {}) for n in range(50)])
        job = await q.enqueue("tests.jobs:add", 7, 7)
        await back
        assert time.monotonic() - started >= 1.5  # it really waited for the node
        async with queue_worker(queue, cluster.url, settings=settings):
            for n, found in enumerate(jobs):
                assert await q.fetch_job_result(found.job_id, timeout=WAIT) == 2 * n
            assert await q.fetch_job_result(job.job_id, timeout=WAIT) == 14


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
