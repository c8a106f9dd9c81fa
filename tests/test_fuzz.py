"""The allow-list holds under 100,000+ fuzzed messages: first against the pure decision for
one message (:func:`naq.worker.decide.decide`), then against a live worker.

Long runs, marked ``fuzz`` (``make fuzz``). The messages come from :mod:`tests.fuzz_inputs`
(seeded, so a failure names the inputs that caused it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger
from tests import fuzz_inputs as fz
from tests import hostile_jobs as hj

import test_hostile as th
from conftest import DLQ_STREAM, JOBS_STREAM, raw_nats
from naq.functions import FunctionResolver
from naq.models import FINAL_STATUS_VALUES, decode_envelope
from naq.serialization import job_signature_valid, sign_job
from naq.settings import Settings, load_settings
from naq.worker.decide import Go, decide

#: Fixtures of the hostile-message tests, reused: the file forbidden code creates when it
#: runs, and a module outside the project whose import or call creates it.
marker = th.marker
outside_module = th.outside_module

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[1]
KEY = b"fuzz-signing-key-of-at-least-32-bytes"
QUEUE = "fuzzq"

#: Hypothesis examples of the decoder test; each runs ``decide`` on 1 + MUTANTS messages, in
#: two configurations (project code without signing; allow-list with signing).
DECODER_EXAMPLES = 5_000
MUTANTS = 19
DECODER_TARGET = 100_000

#: Messages published to the live worker, and how many of them are valid canary jobs.
LIVE_MESSAGES = 100_000
CANARY_EVERY = 20
PUBLISH_WINDOW = 2_000
LIVE_SEED = 16_2026

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(fz.FORBIDDEN_PATHS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
_BODIES = st.dictionaries(st.sampled_from(fz.FIELDS), _JSON, max_size=10)
_HEADERS = st.none() | st.dictionaries(
    st.sampled_from(["Naq-Signature", "naq-signature", "X-A", "Nats-Msg-Id"]) | st.text(max_size=8),
    st.text(max_size=70),
    max_size=3,
)


@dataclasses.dataclass
class Decider:
    """Runs :func:`decide` in one configuration and checks every verdict."""

    name: str
    resolver: FunctionResolver
    signing: bool
    allowed: set[Any]
    options: Settings
    verdicts: Counter[str] = dataclasses.field(default_factory=Counter)
    problems: list[str] = dataclasses.field(default_factory=list)

    def check(self, msg: fz.FuzzedMessage) -> None:
        """Decide about ``msg``; record its verdict and any problem with it."""
        verdict = decide(msg, QUEUE, self.options, self.resolver)
        self.verdicts["go" if isinstance(verdict, Go) else getattr(verdict, "kind", "?")] += 1
        problem = fz.problem_with(
            verdict, msg, QUEUE, self.allowed, _signed if self.signing else None
        )
        if problem is not None and len(self.problems) < 20:
            self.problems.append(f"{self.name}: {problem}: {msg.data[:300]!r} {msg.headers}")


def _claimed_id(data: bytes) -> str:
    try:
        return decode_envelope(data).id
    except Exception:  # noqa: BLE001 - any undecodable message claims no id
        return ""


def _signed(msg: fz.FuzzedMessage) -> bool:
    claimed = _claimed_id(msg.data)
    return job_signature_valid((KEY,), msg.subject, claimed, msg.headers, msg.data)


def _with_signature(rng: random.Random, msg: fz.FuzzedMessage) -> fz.FuzzedMessage:
    """``msg``, most often signed correctly (so the checks after the signature run too)."""
    if rng.random() < 0.3:
        return msg
    headers = dict(msg.headers or {})
    headers.pop("Naq-Signature", None)
    headers["Naq-Signature"] = sign_job(KEY, msg.subject, _claimed_id(msg.data), headers, msg.data)
    return dataclasses.replace(msg, headers=headers)


@pytest.mark.timeout(900)
def test_decide_holds_for_100k_fuzzed_messages(
    tmp_path: Path, marker: Path, outside_module: th.OutsideModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # nothing a resolution adds stays
    allowed = fz.allowed_functions()
    empty = tmp_path / "empty-project"
    empty.mkdir()
    plain = load_settings("nats://127.0.0.1:4222")
    deciders = [
        Decider("project code", FunctionResolver(cwd=str(ROOT)), False, allowed, plain),
        Decider(
            "allow-list + signing",
            FunctionResolver(allowed_modules=["tests.hostile_jobs"], cwd=str(empty)),
            True,
            allowed,
            dataclasses.replace(plain, signing_keys=(KEY,)),
        ),
    ]
    extra = (outside_module.fn, outside_module.fn.replace(":run", ":MARKER"))
    decided = 0

    @settings(
        max_examples=DECODER_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        seed=st.integers(0, 2**32 - 1),
        raw=st.binary(max_size=300),
        body=_BODIES,
        headers=_HEADERS,
        keep=st.booleans(),
    )
    def fuzz(seed: int, raw: bytes, body: dict[str, Any], headers: Any, keep: bool) -> None:
        nonlocal decided
        rng = random.Random(seed)
        if keep:  # often the fields a decoder needs first, so the deeper checks run
            body = {**body, "id": f"h{seed}", "queue": QUEUE}
        subject = f"naq.queue.{QUEUE}"
        inputs = [
            fz.FuzzedMessage(raw, headers, subject),
            fz.FuzzedMessage(fz.json_text(body), headers, subject),
        ]
        for hostile in fz.messages(seed, MUTANTS, QUEUE, extra_paths=extra):
            inputs.append(fz.FuzzedMessage(hostile.payload, hostile.headers, subject))
        for msg in inputs:
            for decider in deciders:
                decider.check(_with_signature(rng, msg) if decider.signing else msg)
        decided += len(inputs)

    started = time.monotonic()
    fuzz()
    took = time.monotonic() - started
    report = {d.name: dict(d.verdicts) for d in deciders}
    print(f"\n{decided} messages decided (x{len(deciders)} configurations) in {took:.0f} s")
    print(json.dumps(report, indent=1))
    problems = [p for d in deciders for p in d.problems]
    if fz.marker_free(marker):
        problems.append(fz.marker_free(marker))
    assert not problems, "\n".join(problems)
    assert decided >= DECODER_TARGET, f"only {decided} messages reached decide"
    for decider in deciders:  # the fuzzing reached every outcome, not only the first checks
        missing = {"go", "undecodable", "invalid", "refused", "function_not_found"}
        missing -= set(decider.verdicts)
        assert not missing, f"{decider.name}: no verdict {missing}: {dict(decider.verdicts)}"
    assert report["allow-list + signing"].get("bad_signature"), "no bad signature was tried"


# ============================================================== a live worker


@dataclasses.dataclass
class Published:
    """What the server stored of the fuzzed messages, by stream sequence."""

    stored: dict[int, bytes] = dataclasses.field(default_factory=dict)
    canaries: dict[int, str] = dataclasses.field(default_factory=dict)  # seq -> token
    duplicates: int = 0  # dropped by the stream's duplicate window (same Nats-Msg-Id)
    refused: list[str] = dataclasses.field(default_factory=list)  # not stored, and why
    seconds: float = 0.0


def live_messages(queue: str, marker: Path, outside: str) -> list[tuple[fz.Hostile, str | None]]:
    """The messages for the live worker, with the canary token of the valid ones. One in
    :data:`CANARY_EVERY` is a valid canary job, as many are valid-looking calls of forbidden
    functions with arguments that create ``marker`` (as does importing ``outside``)."""
    rng = random.Random(LIVE_SEED)
    found: list[tuple[fz.Hostile, str | None]] = []
    traces = [*th.forbidden_calls(marker), (outside, [])]
    for number in range(LIVE_MESSAGES):
        job_id = f"fz{number}"
        if number % CANARY_EVERY == CANARY_EVERY // 2:
            fn, args = traces[number // CANARY_EVERY % len(traces)]
            body = fz.valid_body(job_id, queue, fn)
            body["args"], body["kwargs"] = args, {}
            found.append((fz.Hostile(fz.json_text(body), None, f"forbidden {fn}"), None))
        elif number % CANARY_EVERY == 0:
            token = f"canary-{number}"
            body = fz.valid_body(job_id, queue, "tests.hostile_jobs:canary")
            body["args"], body["kwargs"] = [token], {}
            hostile = fz.Hostile(fz.json_text(body), {"Nats-Msg-Id": job_id}, "canary")
            found.append((hostile, token))
        else:
            hostile = fz.hostile_message(rng, queue, job_id, bounded=True, extra_paths=(outside,))
            found.append((hostile, None))
    return found


async def publish_all(
    nats_url: str, queue: str, messages: list[tuple[fz.Hostile, str | None]]
) -> Published:
    """Publish every message with plain nats-py, :data:`PUBLISH_WINDOW` at a time."""
    out = Published()
    started = time.monotonic()
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        subject = f"naq.queue.{queue}"
        for start in range(0, len(messages), PUBLISH_WINDOW):
            window = messages[start : start + PUBLISH_WINDOW]
            acks = await asyncio.gather(
                *(js.publish(subject, m.payload, headers=m.headers) for m, _ in window),
                return_exceptions=True,
            )
            for (message, token), ack in zip(window, acks, strict=True):
                if isinstance(ack, BaseException):
                    out.refused.append(f"{message.label}: {ack!r}")
                elif ack.duplicate:
                    out.duplicates += 1
                else:
                    out.stored[int(ack.seq)] = message.payload
                    if token is not None:
                        out.canaries[int(ack.seq)] = token
    out.seconds = time.monotonic() - started
    return out


async def drained(nats_url: str, queue: str, timeout: float) -> str:
    """Wait until the queue's consumer has nothing pending or unacknowledged; "" or why not."""
    deadline = time.monotonic() + timeout
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        while True:
            info = await js.consumer_info(JOBS_STREAM, f"naq-{queue}")
            left = await js.stream_info(JOBS_STREAM, subjects_filter=f"naq.queue.{queue}")
            stored = (left.state.subjects or {}).get(f"naq.queue.{queue}", 0)
            if info.num_pending == 0 and info.num_ack_pending == 0 and stored == 0:
                return ""
            if time.monotonic() > deadline:
                return (
                    f"not drained in {timeout:.0f} s: {info.num_pending} pending, "
                    f"{info.num_ack_pending} unacknowledged, {stored} stored"
                )
            await asyncio.sleep(1.0)


async def dead_letters_by_seq(nats_url: str, queue: str) -> tuple[Counter[int], Counter[str]]:
    """How many dead letters name each jobs-stream sequence, and how many of each kind."""
    per_seq: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    subject = f"naq.dlq.{queue}"
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()
        info = await js.stream_info(DLQ_STREAM, subjects_filter=subject)
        total = int((info.state.subjects or {}).get(subject, 0))
        sub = await js.subscribe(subject, ordered_consumer=True)
        try:
            for _ in range(total):
                msg = await sub.next_msg(timeout=10.0)
                headers = msg.headers or {}
                parts = str(headers.get("Nats-Msg-Id", "")).split("-")
                if len(parts) == 3 and parts[0] == "dlq" and parts[1].isdigit():
                    per_seq[int(parts[1])] += 1
                kinds[str(headers.get("Naq-Dlq-Kind", "?"))] += 1
        finally:
            await sub.unsubscribe()
    return per_seq, kinds


async def final_statuses(nats_url: str, job_ids: list[str]) -> dict[str, str | None]:
    """The stored status of each job (``None``: no record)."""
    found: dict[str, str | None] = {}
    async with raw_nats(nats_url) as nc:
        js = nc.jetstream()

        async def status(job_id: str) -> None:
            try:
                msg = await js.get_msg("KV_naq_results", subject=f"$KV.naq_results.{job_id}")
                found[job_id] = str(json.loads(msg.data)["status"]) if msg.data else None
            except Exception:  # noqa: BLE001 - no record, or an id that is no subject
                found[job_id] = None

        for start in range(0, len(job_ids), 200):
            await asyncio.gather(*(status(job_id) for job_id in job_ids[start : start + 200]))
    return found


@pytest.mark.timeout(900)
async def test_live_worker_holds_for_100k_fuzzed_messages(
    nats_url: str,
    queue: str,
    running_worker: Any,
    marker: Path,
    outside_module: th.OutsideModule,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    hj.CANARY_CALLS.clear()
    messages = live_messages(queue, marker, outside_module.fn)
    log = th.WorkerLog()
    sink = logger.add(log.sink, level="ERROR", filter="naq", format="{message}")
    try:
        await _run_live(running_worker, queue, nats_url, log, messages, marker)
    finally:
        logger.remove(sink)


async def _run_live(
    running_worker: Any,
    queue: str,
    nats_url: str,
    log: th.WorkerLog,
    messages: list[tuple[fz.Hostile, str | None]],
    marker: Path,
) -> None:
    async with th.live_worker(running_worker, queue, nats_url, log, concurrency=16) as live:
        published = await publish_all(nats_url, queue, messages)
        started = time.monotonic()
        problems = [f"publishing: {p}" for p in published.refused[:10]]
        not_drained = await drained(nats_url, queue, timeout=600.0)
        drain_seconds = time.monotonic() - started + published.seconds
        if not_drained:
            problems.append(not_drained)
        per_seq, kinds = await dead_letters_by_seq(nats_url, queue)
        dead = {seq for seq in published.stored if per_seq[seq]}
        twice = [seq for seq in published.stored if per_seq[seq] > 1]
        if twice:
            problems.append(f"{len(twice)} messages dead-lettered more than once: {twice[:10]}")
        ran_ids = {
            seq: decode_envelope(published.stored[seq]).id
            for seq in published.stored
            if seq not in dead
        }
        statuses = await final_statuses(nats_url, sorted(set(ran_ids.values())))
        processed = {
            seq for seq, job_id in ran_ids.items() if statuses[job_id] in FINAL_STATUS_VALUES
        }
        lost = [
            f"seq {seq} job {job_id!r}: status {statuses[job_id]!r}"
            for seq, job_id in ran_ids.items()
            if seq not in processed
        ]
        if lost:
            problems.append(
                f"{len(lost)} messages neither processed nor dead-lettered: {lost[:10]}"
            )
        if len(processed) + len(dead) != len(published.stored):
            problems.append(
                f"{len(processed)} processed + {len(dead)} dead-lettered != "
                f"{len(published.stored)} stored"
            )
        calls = Counter(hj.CANARY_CALLS)
        sent = Counter(published.canaries.values())
        if calls != sent:
            problems.append(
                f"the canary ran {sum(calls.values())} times for {len(sent)} valid jobs: "
                f"missing {list((sent - calls).elements())[:10]}, "
                f"extra {list((calls - sent).elements())[:10]}"
            )
        if fz.marker_free(marker):
            problems.append(fz.marker_free(marker))
        problems += await live.still_works()
        final = await live.producer.enqueue(hj.canary, "final")
        if await live.producer.fetch_job_result(final.job_id, timeout=th.ALIVE) != "final":
            problems.append("the final canary job did not return its token")
        print(
            f"\n{len(messages)} messages: {len(published.stored)} stored, "
            f"{published.duplicates} dropped as duplicates, {len(published.refused)} refused; "
            f"published in {published.seconds:.0f} s, all settled after {drain_seconds:.0f} s; "
            f"{len(dead)} dead letters ({len(dead) / drain_seconds:.0f}/s), "
            f"{len(processed)} processed, {len(sent)} canaries; kinds {dict(kinds)}"
        )
        live.check(problems)
