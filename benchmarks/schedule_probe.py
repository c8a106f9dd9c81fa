"""Probe the nats-server facts the scheduling design relies on:
``python -m benchmarks.schedule_probe`` (about 15 s, a fresh embedded server).

1. Which headers a fired ``@at`` message keeps; ``Nats-Msg-Id`` dedupes the schedule publish.
2. The latest ``@at`` the server keeps (later ones overflow int64 ns and fire at once).
3. Firing precision on a quiet server and with dense schedules (250 ms timer floor).
4. A message on a schedule subject without ``Nats-Schedule`` never fires (naq's pause).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

import nats.errors
import nats.js.errors

from naq.server import EmbeddedServer
from naq.settings import load_settings
from naq.transport import Connection

STREAM = "NAQ_SCHEDULES"


def at(ts: float) -> str:
    return "@at " + datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sched(queue: str, when: str) -> dict[str, str]:
    return {"Nats-Schedule": when, "Nats-Schedule-Target": f"naq.due.{queue}"}


async def subjects(conn: Connection, prefix: str) -> dict[str, int]:
    stream = "NAQ_JOBS" if prefix.startswith("naq.queue.") else STREAM  # fired jobs move on
    info = await conn.js.stream_info(stream, subjects_filter=f"{prefix}>")
    return dict(info.state.subjects or {})


async def main_async(url: str) -> None:
    conn = await Connection(load_settings(url)).connect()
    await conn.ensure_jobs_stream()
    js = conn.js
    sub = await js.pull_subscribe("naq.queue.p1", durable="naq-p1", stream="NAQ_JOBS")

    print("1. headers of a fired @at message")
    headers = sched("p1", at(time.time() + 0.5)) | {
        "Nats-Msg-Id": "job-1",
        "Naq-Signature": "abc",
    }
    first = await js.publish("naq.sched.p1.job-1", b"{}", headers=headers)
    again = await js.publish("naq.sched.p1.job-1", b"{}", headers=headers)
    print(f"   schedule publish seq {first.seq}; same Msg-Id again: duplicate={again.duplicate}")
    [msg] = await sub.fetch(1, timeout=5)
    await msg.ack()
    print(f"   fired on {msg.subject} with headers {dict(msg.headers or {})}")

    print("2. the latest @at the server keeps")
    limits = [
        "2262-04-11T23:47:16.854775Z",
        "2262-04-11T23:47:16.854776Z",
        "2300-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ]
    for i, stamp in enumerate(limits):
        await js.publish(f"naq.sched.p2.t{i}", b"x", headers=sched(f"p2t{i}", f"@at {stamp}"))
    await asyncio.sleep(1.0)
    fired = await subjects(conn, "naq.queue.")
    for i, stamp in enumerate(limits):
        state = "FIRED AT ONCE" if f"naq.queue.p2t{i}" in fired else "kept"
        print(f"   @at {stamp}: {state}")

    print("3. firing precision")
    for label, background in (("quiet server", 0), ("300 schedules/s around it", 300)):
        if background:
            start = time.time() + 1
            futures = [
                await js.publish_async(
                    f"naq.sched.bg.b{i}", b"x", headers=sched("bg", at(start + i / background))
                )
                for i in range(background * 30)
            ]
            await asyncio.gather(*futures)
        late = []
        for _ in range(8):
            due = math.ceil(time.time() + 0.8) + 0.123
            await js.publish("naq.sched.p1.t", b"x", headers=sched("p1", at(due)))
            [msg] = await sub.fetch(1, timeout=5)
            late.append((msg.metadata.timestamp.timestamp() - due) * 1000)
            await msg.ack()
        print(f"   {label}: stored {', '.join(f'{x:.1f}' for x in late)} ms after the due time")

    print("4. a plain message on a schedule subject (naq's pause) does not fire")
    await js.publish("naq.sched.p1.paused", b"x", headers=sched("p1", at(time.time() + 0.5)))
    await js.publish(
        "naq.sched.p1.paused", b"x", headers={"Nats-Rollup": "sub", "Naq-Paused-Due": "..."}
    )
    try:
        await sub.fetch(1, timeout=1.5)
        print("   it fired (unexpected)")
    except (nats.js.errors.FetchTimeoutError, nats.errors.TimeoutError):
        print("   nothing fired; the message is kept:", await subjects(conn, "naq.sched.p1."))
    await sub.unsubscribe()
    await conn.close()


def main() -> None:
    with EmbeddedServer() as server:
        asyncio.run(main_async(server.url))


if __name__ == "__main__":
    main()
