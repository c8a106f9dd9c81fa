"""naq.wire: header blocks, ack subjects and the synchronous publish/dispatch path, checked
against a real nats-server (and nats-py's own parsing of what naq sends)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
import pytest
from loguru import logger
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from conftest import WAIT, wait_for
from naq.errors import NaqConnectionError
from naq.transport import wire


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    """A plain nats-py client for the test (closed afterwards)."""
    client = await nats.connect(nats_url, allow_reconnect=False)
    try:
        yield client
    finally:
        if not client.is_closed:
            await client.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


PROBE = b"probe"


async def until_delivered(publisher: NatsClient, subject: str, seen: asyncio.Event) -> None:
    """Publish probes on ``subject`` until the subscriber saw one (``seen`` set).

    Another connection's new subscription is not always registered when its ``flush()``
    returns: nats-py 2.16 writes flush's PING to the socket ahead of commands still waiting
    in its buffer (the SUB). Messages from one connection arrive in order, so once a probe
    got through, everything published after it does too."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not seen.is_set():
        assert asyncio.get_running_loop().time() < deadline, "subscription never became active"
        await publisher.publish(subject, PROBE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.wait(), 0.05)


# --------------------------------------------------------------------------- encode_headers


def test_encode_headers_builds_a_nats_header_block() -> None:
    block = wire.encode_headers({"Nats-Msg-Id": "abc-1", "Nats-TTL": "60", "X-Url": "a:b c"})
    assert block == b"NATS/1.0\r\nNats-Msg-Id: abc-1\r\nNats-TTL: 60\r\nX-Url: a:b c\r\n\r\n"
    assert wire.encode_headers({}) == b"NATS/1.0\r\n\r\n"
    assert wire.encode_headers({"K": ""}) == b"NATS/1.0\r\nK: \r\n\r\n"
    assert wire.encode_headers({"K": "h\u00e9"}) == "NATS/1.0\r\nK: h\u00e9\r\n\r\n".encode()


@pytest.mark.parametrize(
    "key", ["", "a:b", "a b", "a\rb", "a\nb", "trailing ", ":", "a\r\nInjected"], ids=repr
)
def test_encode_headers_rejects_bad_keys(key: str) -> None:
    with pytest.raises(ValueError, match="invalid NATS header"):
        wire.encode_headers({"Good": "1", key: "value"})


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "x\r\nInjected: 1", "\n"], ids=repr)
def test_encode_headers_rejects_values_with_line_breaks(value: str) -> None:
    with pytest.raises(ValueError, match="invalid NATS header"):
        wire.encode_headers({"Key": value})


# --------------------------------------------------------------------------- delivery_info


def test_delivery_info_reads_the_nine_token_ack_subject() -> None:
    reply = "$JS.ACK.ORDERS.worker-1.3.1234.77.1700000000000000000.5"
    assert wire.delivery_info(reply) == (1234, 3)
    assert wire.delivery_info("$JS.ACK.S.C.1.1.1.0.0") == (1, 1)


def test_delivery_info_reads_the_domain_and_account_forms() -> None:
    twelve = "$JS.ACK.hub.ACCHASH.ORDERS.worker-1.4.98765.77.1700000000000000000.0.tok3n"
    assert wire.delivery_info(twelve) == (98765, 4)
    eleven = "$JS.ACK.hub.ACCHASH.ORDERS.worker-1.2.555.77.1700000000000000000.0"
    assert wire.delivery_info(eleven) == (555, 2)


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "_INBOX.abc",
        "$JS.ACK.S.C.1.2.3",  # too short
        "$JS.ACK.S.C.1.2.3.4.5.6",  # 10 tokens
        "$JS.NAK.hub.HASH.S.C.1.2.3.4.5.tok",  # 12 tokens, not an ack subject
        "naq.queue.a.b.c.d.e.f.g.h.i.j",  # 12 tokens, not an ack subject
        "$JS.ACK.S.C.x.y.3.4.5",  # not numbers
    ],
    ids=repr,
)
def test_delivery_info_rejects_other_subjects(reply: str) -> None:
    with pytest.raises(ValueError):
        wire.delivery_info(reply)


def test_delivery_info_rejects_nine_tokens_that_are_not_an_ack_subject() -> None:
    # regression: the 9-token form was once accepted without its $JS.ACK prefix
    for reply in ("naq.queue.S.C.1.2.3.4.5", "$JS.NAK.S.C.1.2.3.4.5", "x.ACK.S.C.1.2.3.4.5"):
        with pytest.raises(ValueError):
            wire.delivery_info(reply)


async def test_delivery_info_matches_nats_py_metadata_of_real_deliveries(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    stream, subject = unique("WIRE_DI"), unique("wire.di")
    await js.add_stream(name=stream, subjects=[subject])
    for i in range(3):
        await js.publish(subject, f"m{i}".encode())
    psub = await js.pull_subscribe(subject, durable="di")

    first = await psub.fetch(3, timeout=WAIT)
    assert [m.data for m in first] == [b"m0", b"m1", b"m2"]
    for msg in first:
        assert msg.reply.startswith("$JS.ACK.")
        meta = msg.metadata
        assert wire.delivery_info(msg.reply) == (meta.sequence.stream, meta.num_delivered)
    assert [wire.delivery_info(m.reply) for m in first] == [(1, 1), (2, 1), (3, 1)]

    # nak the middle one: its redelivery counts 2 deliveries
    await first[0].ack()
    await first[2].ack()
    wire.reply_to(first[1], wire.nak_body())
    again = await psub.fetch(1, timeout=WAIT)
    assert again[0].data == b"m1"
    meta = again[0].metadata
    assert wire.delivery_info(again[0].reply) == (meta.sequence.stream, meta.num_delivered)
    assert wire.delivery_info(again[0].reply) == (2, 2)
    await again[0].ack()
    await psub.unsubscribe()


# --------------------------------------------------------------------------- nak_body


def test_nak_body_without_or_with_zero_delay_is_a_plain_nak() -> None:
    assert wire.nak_body() == b"-NAK"
    assert wire.nak_body(None) == b"-NAK"
    assert wire.nak_body(0) == b"-NAK"
    assert wire.nak_body(-3) == b"-NAK"


def test_nak_body_with_delay_asks_for_it_in_nanoseconds() -> None:
    assert wire.nak_body(1.5) == b'-NAK {"delay": 1500000000}'
    assert wire.nak_body(5) == b'-NAK {"delay": 5000000000}'
    assert wire.nak_body(0.001) == b'-NAK {"delay": 1000000}'


async def test_nak_with_delay_holds_back_the_redelivery(nc: NatsClient) -> None:
    js = nc.jetstream()
    stream, subject = unique("WIRE_NAKD"), unique("wire.nakd")
    await js.add_stream(name=stream, subjects=[subject])
    await js.publish(subject, b"x")
    psub = await js.pull_subscribe(subject, durable="nakd")
    [msg] = await psub.fetch(1, timeout=WAIT)

    loop = asyncio.get_running_loop()
    naked_at = loop.time()
    wire.reply_to(msg, wire.nak_body(1.0))
    with pytest.raises(nats.errors.TimeoutError):
        await psub.fetch(1, timeout=0.5)  # not redelivered yet
    [again] = await psub.fetch(1, timeout=WAIT)
    assert loop.time() - naked_at >= 0.9
    assert wire.delivery_info(again.reply) == (1, 2)
    await again.ack()
    await psub.unsubscribe()


# --------------------------------------------------------------------------- publish / dispatch


def test_fast_path_is_in_use_with_the_installed_nats_py() -> None:
    # the other tests exercise the fast path only if this holds
    assert wire.FAST is True


async def test_publish_now_and_subscribe_direct_round_trip_in_order_with_headers(
    nats_url: str, nc: NatsClient
) -> None:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(repr(exc))

    receiver = await nats.connect(nats_url, allow_reconnect=False, error_cb=on_error)
    try:
        subject = unique("wire.rt")
        got: list[Msg] = []
        seen_pending: list[int] = []
        subs: list[Any] = []

        all_arrived, probed = asyncio.Event(), asyncio.Event()
        count = 1000

        def handler(msg: Msg) -> None:
            if msg.data == PROBE:
                probed.set()
                return
            got.append(msg)
            seen_pending.append(subs[0].pending_msgs if subs else -1)
            if len(got) >= count:
                all_arrived.set()

        sub = await wire.subscribe_direct(receiver, subject, handler)
        subs.append(sub)
        await until_delivered(nc, subject, probed)

        for i in range(count):
            block = wire.encode_headers({"Seq": str(i), "Job": f"job-{i}"}) if i % 2 else None
            wire.publish_now(nc, subject, f"payload-{i}".encode(), "", block)
        await nc.flush()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), WAIT)
        await asyncio.sleep(0.05)
        arrived = {int(m.data.split(b"-")[1]) for m in got}
        missing = sorted(set(range(count)) - arrived)
        assert len(got) == count, (  # all of them, nothing twice
            f"{len(got)} of {count} arrived; missing {missing[:10]}... ({len(missing)}); "
            f"receiver parsed {receiver.stats['in_msgs']} msgs, connected "
            f"{receiver.is_connected}; publisher sent {nc.stats['out_msgs']}, pending "
            f"{len(nc._pending)} cmds; server errors {errors}"
        )
        assert [m.data for m in got] == [f"payload-{i}".encode() for i in range(count)]
        for i, msg in enumerate(got):
            assert msg.subject == subject
            if i % 2:
                assert msg.headers == {"Seq": str(i), "Job": f"job-{i}"}
            else:
                assert not msg.headers
        # dispatched straight from the read loop: nothing ever waited in nats-py's queue
        assert seen_pending == [0] * count
        assert sub.pending_msgs == 0
        assert sub.pending_bytes == 0
        assert nc.stats["out_msgs"] >= count
    finally:
        await receiver.close()


async def test_publish_now_with_reply_subject_reaches_a_nats_py_subscriber(
    nc: NatsClient,
) -> None:
    subject = unique("wire.reply")
    sub = await nc.subscribe(subject)
    wire.publish_now(nc, subject, b"ping", "answer.here", wire.encode_headers({"A": "1"}))
    wire.publish_now(nc, subject, b"", "")
    first = await sub.next_msg(timeout=WAIT)
    second = await sub.next_msg(timeout=WAIT)
    assert (first.data, first.reply, first.headers) == (b"ping", "answer.here", {"A": "1"})
    assert (second.data, second.reply) == (b"", "")
    await sub.unsubscribe()


async def test_a_failing_handler_does_not_stop_later_messages(
    nats_url: str, nc: NatsClient
) -> None:
    subject = unique("wire.err")
    got: list[bytes] = []
    logged: list[str] = []
    sink = logger.add(lambda m: logged.append(m.record["message"]), level="ERROR")

    def handler(msg: Msg) -> None:
        if msg.data in (b"3", b"7"):
            raise RuntimeError(f"handler blew up on {msg.data!r}")
        got.append(msg.data)

    try:
        sub = await wire.subscribe_direct(nc, subject, handler)
        await nc.flush()
        for i in range(10):
            wire.publish_now(nc, subject, str(i).encode())
        await nc.flush()
        await wait_for(lambda: _ready(len(got) >= 8), timeout=WAIT)
    finally:
        logger.remove(sink)
    assert got == [str(i).encode() for i in range(10) if i not in (3, 7)]
    assert nc.is_connected
    assert len(logged) == 2
    assert all(subject in line for line in logged)
    # still subscribed and working afterwards
    wire.publish_now(nc, subject, b"after")
    await wait_for(lambda: _ready(got[-1] == b"after"), timeout=WAIT)
    await sub.unsubscribe()


async def test_unsubscribed_direct_handler_gets_nothing_more(nc: NatsClient) -> None:
    subject = unique("wire.unsub")
    got: list[bytes] = []
    sub = await wire.subscribe_direct(nc, subject, lambda m: got.append(m.data))
    await nc.flush()
    wire.publish_now(nc, subject, b"one")
    await wait_for(lambda: _ready(got == [b"one"]), timeout=WAIT)
    await sub.unsubscribe()
    await nc.flush()
    wire.publish_now(nc, subject, b"two")
    await nc.flush()
    await asyncio.sleep(0.2)
    assert got == [b"one"]


async def test_reply_to_acks_a_jetstream_message(nc: NatsClient) -> None:
    js = nc.jetstream()
    stream, subject = unique("WIRE_ACK"), unique("wire.ack")
    await js.add_stream(name=stream, subjects=[subject])
    for i in range(3):
        await js.publish(subject, str(i).encode())
    psub = await js.pull_subscribe(
        subject, durable="acker", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
    )
    msgs = await psub.fetch(3, timeout=WAIT)
    assert len(msgs) == 3
    info = await js.consumer_info(stream, "acker")
    assert info.num_ack_pending == 3

    async def acked() -> bool:
        info = await js.consumer_info(stream, "acker")
        return bool(info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3)

    for msg in msgs:
        wire.reply_to(msg, wire.ACK)
    await wait_for(acked, timeout=WAIT)
    # acked for good: nothing is redelivered
    with pytest.raises(nats.errors.TimeoutError):
        await psub.fetch(1, timeout=0.3)
    await psub.unsubscribe()


async def test_reply_to_term_stops_redelivery_and_in_progress_is_accepted(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    stream, subject = unique("WIRE_TERM"), unique("wire.term")
    await js.add_stream(name=stream, subjects=[subject])
    await js.publish(subject, b"x")
    psub = await js.pull_subscribe(subject, durable="term")
    [msg] = await psub.fetch(1, timeout=WAIT)
    wire.reply_to(msg, wire.IN_PROGRESS)
    wire.reply_to(msg, wire.TERM)

    async def settled() -> bool:
        return bool((await js.consumer_info(stream, "term")).num_ack_pending == 0)

    await wait_for(settled, timeout=WAIT)
    with pytest.raises(nats.errors.TimeoutError):
        await psub.fetch(1, timeout=0.3)
    await psub.unsubscribe()


async def test_reply_to_a_message_without_reply_subject_raises(nc: NatsClient) -> None:
    subject = unique("wire.noreply")
    sub = await nc.subscribe(subject)
    await nc.publish(subject, b"x")
    msg = await sub.next_msg(timeout=WAIT)
    with pytest.raises(NaqConnectionError, match="no reply subject"):
        wire.reply_to(msg, wire.ACK)
    await sub.unsubscribe()


async def test_publish_now_on_a_closed_client_raises(nats_url: str) -> None:
    client = await nats.connect(nats_url, allow_reconnect=False)
    await client.close()
    with pytest.raises(NaqConnectionError, match="closed"):
        wire.publish_now(client, "wire.closed", b"x")
    with pytest.raises(NaqConnectionError, match="closed"):
        wire.publish_now(client, "wire.closed", b"x", "r", wire.encode_headers({"A": "1"}))


async def test_fallback_path_still_delivers(
    nats_url: str, nc: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire, "FAST", False)
    receiver = await nats.connect(nats_url, allow_reconnect=False)
    try:
        subject = unique("wire.fallback")
        got: list[Msg] = []
        probed = asyncio.Event()

        def handler(msg: Msg) -> None:
            if msg.data == PROBE:
                probed.set()
            else:
                got.append(msg)

        sub = await wire.subscribe_direct(receiver, subject, handler)
        await until_delivered(nc, subject, probed)

        count = 200
        for i in range(count):
            block = wire.encode_headers({"N": str(i)}) if i % 3 == 0 else None
            wire.publish_now(nc, subject, str(i).encode(), "", block)
        # the fallback schedules nats-py publishes as tasks: let them run, then flush
        await wait_for(lambda: _ready(not wire._fallback_sends), timeout=WAIT)
        await nc.flush()
        await wait_for(lambda: _ready(len(got) >= count), timeout=WAIT)

        assert [m.data for m in got] == [str(i).encode() for i in range(count)]
        for i, msg in enumerate(got):
            if i % 3 == 0:
                assert msg.headers == {"N": str(i)}
            else:
                assert not msg.headers
        await sub.unsubscribe()
    finally:
        await receiver.close()


async def test_fallback_reply_to_acks(nc: NatsClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "FAST", False)
    js = nc.jetstream()
    stream, subject = unique("WIRE_FBACK"), unique("wire.fback")
    await js.add_stream(name=stream, subjects=[subject])
    await js.publish(subject, b"x")
    psub = await js.pull_subscribe(subject, durable="fb")
    [msg] = await psub.fetch(1, timeout=WAIT)
    wire.reply_to(msg, wire.ACK)

    async def acked() -> bool:
        return bool((await js.consumer_info(stream, "fb")).num_ack_pending == 0)

    await wait_for(acked, timeout=WAIT)
    await psub.unsubscribe()


async def _ready(value: bool) -> bool:
    return value
