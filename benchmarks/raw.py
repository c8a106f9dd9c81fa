"""Raw nats-py baselines: the same work as the naq scenarios, without naq.

Jobs go to the WorkQueue stream ``BENCH_RAW`` (``bench.raw.<scenario>``), results to the
KV-like stream ``BENCH_RESULTS`` (``bench.result.<scenario>.<seq>``: one message per subject,
per-message TTL allowed, like naq's results bucket). Payloads are ``PAYLOAD_SIZE`` bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from .common import Child, percentile, proc_status_mib

STREAM = "BENCH_RAW"
RESULTS = "BENCH_RESULTS"
PAYLOAD_SIZE = 200
PAYLOAD = b"x" * PAYLOAD_SIZE
#: ``publish_async`` window (nats-py's default ``publish_async_max_pending``).
ASYNC_WINDOW = 4000
ID_LEN = 8
#: A job record of about the size naq writes at enqueue, and its per-message TTL header.
RECORD = b"r" * 200
TTL_HEADER = {"Nats-TTL": "604800"}


class Raw:
    """One raw nats-py connection and the baseline scenarios run with it."""

    def __init__(self, nats_url: str, use_uvloop: bool = False) -> None:
        self.url = nats_url
        self.uvloop = use_uvloop
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "call connect() first"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "call connect() first"
        return self._js

    async def connect(self) -> None:
        self._nc = await nats.connect(self.url, pending_size=64 * 1024 * 1024)
        self._js = self._nc.jetstream(publish_async_max_pending=ASYNC_WINDOW)
        await self.js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=["bench.raw.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        )
        await self.js.add_stream(
            StreamConfig(
                name=RESULTS,
                subjects=["bench.result.>"],
                storage=StorageType.FILE,
                max_msgs_per_subject=1,
                allow_msg_ttl=True,
                allow_direct=True,
            )
        )

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = self._js = None

    async def purge(self) -> None:
        await self.js.purge_stream(STREAM)
        await self.js.purge_stream(RESULTS)

    async def purge_stream(self, name: str) -> None:
        """Purge any stream (used for naq's results bucket between scenarios)."""
        await self.js.purge_stream(name)

    # -- enqueue ---------------------------------------------------------------------------
    async def publish_sequential(self, n: int, with_record: bool = False) -> float:
        """``await js.publish()`` one job at a time; jobs/s.

        ``with_record``: per job also write a record to the KV-like stream, both awaited
        together (``asyncio.gather``): the two writes a naq enqueue makes.
        """
        js = self.js

        async def one(i: int) -> None:
            if with_record:
                await asyncio.gather(
                    js.publish(f"bench.result.enq.{i}", RECORD, headers=dict(TTL_HEADER)),
                    js.publish("bench.raw.seq", PAYLOAD),
                )
            else:
                await js.publish("bench.raw.seq", PAYLOAD)

        for i in range(min(50, n)):  # warm-up
            await one(i)
        t0 = time.perf_counter()
        for i in range(n):
            await one(i)
        rate = n / (time.perf_counter() - t0)
        await self.purge()
        return rate

    async def publish_pipelined(self, n: int, with_record: bool = False) -> float:
        """``publish_async`` (window ``ASYNC_WINDOW``) + ``publish_async_completed``; jobs/s.
        ``with_record``: two messages per job, as ``enqueue_many`` sends."""
        await self._publish_async("bench.raw.async", min(500, n), with_record)  # warm-up
        t0 = time.perf_counter()
        await self._publish_async("bench.raw.async", n, with_record)
        rate = n / (time.perf_counter() - t0)
        await self.purge()
        return rate

    async def _publish_async(self, subject: str, n: int, with_record: bool = False) -> None:
        js = self.js
        futures: list[asyncio.Future[Any]] = []
        for i in range(n):
            if with_record:
                futures.append(
                    await js.publish_async(
                        f"bench.result.enq.{i}", RECORD, headers=dict(TTL_HEADER)
                    )
                )
            futures.append(await js.publish_async(subject, PAYLOAD))
        await js.publish_async_completed()
        for future in futures:
            future.result()  # raise if any publish failed

    # -- processing ------------------------------------------------------------------------
    async def _consumer(self, name: str, subject: str) -> None:
        await self.js.add_consumer(
            STREAM,
            ConsumerConfig(
                durable_name=name,
                filter_subject=subject,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_ack_pending=20000,
            ),
        )

    def _child_args(self, mode: str, consumer: str, *extra: str) -> list[str]:
        args = ["benchmarks.raw_consumer", "--mode", mode, "--stream", STREAM]
        args += ["--consumer", consumer, *extra]
        return [*args, "--uvloop"] if self.uvloop else args

    async def drain(self, mode: str, n: int) -> dict[str, Any]:
        """Pre-fill ``n`` messages, then drain them in a consumer process (``ack``/``store``).

        jobs/s = completions between the first and the last one / that time (start-up
        excluded); ``with_startup`` counts from starting the process.
        """
        consumer = f"raw-{mode}"
        subject = f"bench.raw.{mode}"
        await self._consumer(consumer, subject)
        await self._publish_async(subject, n)
        spawned = time.time()
        child = await Child.start(self._child_args(mode, consumer, "--expect", str(n)), self.url)
        done = await child.finish("done", timeout=120)
        info = await self.js.consumer_info(STREAM, consumer)
        await self.purge()
        first, last = done["first_done"], done["last_done"]
        if last is None or info.num_ack_pending or info.num_pending:
            raise RuntimeError(f"raw {mode}: drained {done['count']}/{n}: {info}")
        return {
            "n": n,
            "rate": (n - 1) / (last - first),
            "with_startup": n / (last - spawned),
            "consumer_cpu_pct": 100 * done["cpu_s"] / (last - first),
            "peak_rss_mib": done["peak_rss_mib"],
        }

    # -- latency ---------------------------------------------------------------------------
    async def latency(self, samples: int, warmup: int = 20) -> dict[str, Any]:
        """Publish one message at a time to an idle consumer process (long-polling pull);
        it publishes a result (awaited) with its receive time, then acks. Milliseconds:
        publish -> received, publish -> result message seen by the producer."""
        consumer, subject = "raw-latency", "bench.raw.latency"
        await self._consumer(consumer, subject)
        child = await Child.start(self._child_args("latency", consumer, "--batch", "10"), self.url)
        waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

        async def on_result(msg: Msg) -> None:
            body = json.loads(msg.data)
            future = waiting.pop(body["data"][:ID_LEN], None)
            if future is not None and not future.done():
                future.set_result(body)

        sub = await self.nc.subscribe("bench.result.lat.*", cb=on_result)
        await self.nc.flush()
        to_start: list[float] = []
        to_result: list[float] = []
        try:
            await child.wait_event("ready", timeout=30)
            idle_rss = proc_status_mib("VmRSS", child.pid)
            loop = asyncio.get_running_loop()
            for i in range(warmup + samples):
                key = f"{i:0{ID_LEN}d}"
                future: asyncio.Future[dict[str, Any]] = loop.create_future()
                waiting[key] = future
                payload = key.encode() + PAYLOAD[ID_LEN:]
                sent_wall = time.time()
                t0 = time.perf_counter()
                await self.js.publish(subject, payload)
                body = await asyncio.wait_for(future, 5)
                t1 = time.perf_counter()
                if i >= warmup:
                    to_start.append((float(body["received"]) - sent_wall) * 1000)
                    to_result.append((t1 - t0) * 1000)
        finally:
            await sub.unsubscribe()
            await child.stop("done")
            await self.purge()
        return {
            "samples": samples,
            "start_p50": percentile(to_start, 50),
            "start_p99": percentile(to_start, 99),
            "result_p50": percentile(to_result, 50),
            "result_p99": percentile(to_result, 99),
            "idle_rss_mib": idle_rss,
        }
