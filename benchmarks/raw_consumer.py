"""The raw nats-py consumer baseline, in its own process (like a naq worker).

A hand-written pull loop (the fastest nats-py pattern measured in the NATS reference): one
inbox subscription with a callback, ``$JS.API.CONSUMER.MSG.NEXT`` requests for ``--batch``
messages re-issued when half have arrived, ``+ACK`` published to each message's reply subject.

Modes:

* ``ack``: receive, ``+ACK``. The ceiling for any queue on this client.
* ``store``: receive, store a small result message (``publish_async`` to a KV-like stream,
  its PubAck awaited), then ``+ACK``: the same work as a naq worker storing results.
* ``latency``: long-poll; per message publish a result carrying the receive time (awaited),
  then ``+ACK``. Runs until SIGTERM.

Events on stdout: ``ready`` once the first pull request is out, ``done`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from .common import emit, proc_status_mib, run_async

RESULT_TTL_HEADER = {"Nats-TTL": "604800"}
ACK = b"+ACK"


class RawPuller:
    """Keeps up to ``batch`` messages requested from one durable pull consumer."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        batch: int,
        expires: float,
        on_msg: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.batch = batch
        self.expires_ns = int(expires * 1e9)
        self.on_msg = on_msg
        self.outstanding = 0
        self.inbox = ""

    async def start(self) -> None:
        self.inbox = self.nc.new_inbox()
        await self.nc.subscribe(self.inbox, cb=self._on_message)
        await self._top_up()
        await self.nc.flush()

    async def _top_up(self) -> None:
        if self.outstanding > self.batch // 2:
            return
        want = self.batch - self.outstanding
        self.outstanding += want
        body = json.dumps({"batch": want, "expires": self.expires_ns}).encode()
        await self.nc.publish(self.next_subject, body, reply=self.inbox)

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            self.outstanding -= 1
            await self.on_msg(msg)
        else:  # a status: 408 request expired, 404 nothing there, 409 ..., 100 heartbeat
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status == "100":
                return
            pending = headers.get("Nats-Pending-Messages", "")
            if pending.isdigit():
                self.outstanding = max(0, self.outstanding - int(pending))
            else:
                self.outstanding = 0
            if status == "409":
                await asyncio.sleep(0.05)
        await self._top_up()


class Counter:
    """Counts completions; notes the first and the ``expect``-th."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.cpu_first = self.cpu_last = 0.0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first_at = time.time()
            self.cpu_first = time.process_time()
        if self.count == self.expect:
            self.last_at = time.time()
            self.cpu_last = time.process_time()
            self.done.set()


def _handlers(nc: Client, mode: str, counter: Counter) -> tuple[Any, list[asyncio.Task[None]]]:
    js = nc.jetstream()
    tasks: list[asyncio.Task[None]] = []

    async def ack_only(msg: Msg) -> None:
        await nc.publish(msg.reply, ACK)
        counter.hit()

    acks: asyncio.Queue[tuple[asyncio.Future[Any], str]] = asyncio.Queue()

    async def store(msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        result = json.dumps({"seq": seq, "status": "completed", "finished_at": time.time()})
        future = await js.publish_async(
            f"bench.result.store.{seq}", result.encode(), headers=dict(RESULT_TTL_HEADER)
        )
        acks.put_nowait((future, msg.reply))

    async def acker() -> None:
        while True:
            future, reply = await acks.get()
            await future  # the result is stored: now the job may go
            await nc.publish(reply, ACK)
            counter.hit()

    async def latency(msg: Msg) -> None:
        received = time.time()
        seq = msg.metadata.sequence.stream
        body = json.dumps({"received": received, "data": msg.data.decode()}).encode()
        await js.publish(f"bench.result.lat.{seq}", body, headers=dict(RESULT_TTL_HEADER))
        await nc.publish(msg.reply, ACK)
        counter.hit()

    if mode == "store":
        tasks.append(asyncio.create_task(acker()))
        return store, tasks
    if mode == "latency":
        return latency, tasks
    return ack_only, tasks


async def amain(args: argparse.Namespace) -> None:
    started = time.time()
    nc = await nats.connect(os.environ["NAQ_NATS_URL"], pending_size=64 * 1024 * 1024)
    counter = Counter(args.expect)
    handler, tasks = _handlers(nc, args.mode, counter)
    puller = RawPuller(nc, args.stream, args.consumer, args.batch, args.expires, handler)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await puller.start()
    emit("ready", rss_mib=proc_status_mib("VmRSS"))
    waits = [asyncio.create_task(stop.wait())]
    if args.expect:
        waits.append(asyncio.create_task(counter.done.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in [*waits, *tasks]:
        task.cancel()
    await nc.flush()
    emit(
        "done",
        started=started,
        count=counter.count,
        first_done=counter.first_at,
        last_done=counter.last_at,
        cpu_s=counter.cpu_last - counter.cpu_first,
        rss_mib=proc_status_mib("VmRSS"),
        peak_rss_mib=proc_status_mib("VmHWM"),
    )
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("ack", "store", "latency"), required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--expires", type=float, default=5.0)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    run_async(amain(args), args.uvloop)


if __name__ == "__main__":
    main()
