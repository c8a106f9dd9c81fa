"""Run every benchmark on one fresh embedded server and print naq vs raw nats-py.

``make bench`` runs ``python -m benchmarks.run`` from the repository root. Options:
``--quick`` (small N, a sanity check), ``--repeat K`` (median of K runs for throughput
rows), ``--uvloop``, ``--out PATH`` (JSON), ``--update-docs`` (rewrite the table in
``docs/performance.md``). See docs/performance.md for what each row measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

import naq
from naq.server import EmbeddedServer, find_nats_server, free_port

from . import jobs
from .common import ROOT, run_async
from .dashboard_bench import PAGES, open_dashboard
from .deps_bench import DepsBench
from .limits_bench import RATE, RATE_WARMUP_S, LimitsBench
from .naq_bench import BENCH_SIGNING_KEY, RESULTS_STREAM, SIGNING_FLAG, NaqBench
from .priority_bench import STALL_MS, PriorityBench
from .raw import ASYNC_WINDOW, PAYLOAD_SIZE, Raw
from .report import Row, Target, load_json, markdown_table, print_table, save_json

T = TypeVar("T")
DOCS = ROOT / "docs" / "performance.md"
DOCS_START = "<!-- bench-table:start -->"
DOCS_END = "<!-- bench-table:end -->"
#: 1-minute load average above which the machine is not idle enough for clean numbers.
BUSY_LOAD = 0.5


@dataclass(frozen=True)
class Sizes:
    """How many jobs each scenario uses."""

    enqueue: int = 2000
    many: int = 20000
    process: int = 20000
    raw_process: int = 50000  # raw consumers are fast: more messages for a steadier rate
    latency: int = 300
    sleep: int = 1000
    dep_latency: int = 200  # parent → dependant pairs
    fan_in: int = 1000  # parents of one job (the most a job may depend on)
    fan_out: int = 10000  # children of one parent
    prio_backlog: int = 2000  # 2 ms priority-0 jobs the priority-9 ones overtake
    prio_high: int = 20  # priority-9 jobs enqueued one by one into that backlog
    prio_latency: int = 300  # idle-worker samples of priority-9 enqueue → start
    limit_rate_jobs: int = 3000  # no-op jobs under one rate limit shared by 3 workers
    limit_rate_window: float = 10.0  # seconds of starts the achieved rate is taken over
    limit_family_jobs: int = 5000  # no-op jobs under a concurrency-1 family
    limit_family_keys: int = 1000  # distinct keys of that family they take

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            enqueue=300,
            many=2000,
            process=2000,
            raw_process=5000,
            latency=50,
            sleep=1000,
            dep_latency=20,
            fan_in=50,
            fan_out=200,
            prio_backlog=400,
            prio_high=10,
            prio_latency=50,
            limit_rate_jobs=500,
            limit_rate_window=1.0,
            limit_family_jobs=1000,
            limit_family_keys=200,
        )


#: Rounds of the processing scenarios at least (their feature rows compare two rates).
PROCESS_ROUNDS = 5


class Runner:
    """Runs the scenarios in a fixed order, raw and naq side by side."""

    def __init__(self, url: str, sizes: Sizes, repeat: int, use_uvloop: bool) -> None:
        self.url = url
        self.sizes = sizes
        self.repeat = repeat
        self.raw = Raw(url, use_uvloop)
        self.naq = NaqBench(url, self._purge_naq_results, use_uvloop)
        self.deps = DepsBench(url, self.naq)
        self.prio = PriorityBench(url, self.naq)
        self.limits = LimitsBench(url, self.naq, self.raw)
        self.details: dict[str, Any] = {}
        self.console = Console(stderr=True)

    async def _purge_naq_results(self) -> None:
        await self.raw.purge_stream(RESULTS_STREAM)

    async def _rounds(
        self,
        scenarios: dict[str, tuple[Callable[[], Awaitable[Any]], str]],
        repeat: int | None = None,
    ) -> dict[str, Any]:
        """Run each scenario ``repeat`` times, alternating between them in a different order
        each round (so drift hits naq and raw alike); keep every run, return each scenario's
        run with the median ``pick`` value (``pick`` names a key of a dict result, or is empty
        for a plain number)."""
        rounds = repeat or self.repeat
        runs: dict[str, list[Any]] = {key: [] for key in scenarios}
        order = list(scenarios)
        shuffler = random.Random(len(order))  # the same orders in every run of the bench
        for i in range(rounds):
            if i:  # no scenario always first (the machine drifts within a round too)
                shuffler.shuffle(order)
            for key in order:
                body, pick = scenarios[key]
                t0 = time.perf_counter()
                result = await body()
                runs[key].append(result)
                shown = result[pick] if pick else result
                took = time.perf_counter() - t0
                self.console.log(f"{key} [{i + 1}/{rounds}]: {_short(shown)} ({took:.1f} s)")
        chosen: dict[str, Any] = {}
        for key, (_body, pick) in scenarios.items():
            values = [r[pick] if pick else r for r in runs[key]]
            self.details[key] = runs[key] if rounds > 1 else runs[key][0]
            chosen[key] = runs[key][
                sorted(range(len(values)), key=values.__getitem__)[len(values) // 2]
            ]
        return chosen

    async def _once(self, key: str, body: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        result = await body
        self.details[key] = result
        self.console.log(f"{key}: {_short(result)} ({time.perf_counter() - t0:.1f} s)")
        return result

    async def run(self) -> dict[str, Any]:
        """Every scenario, in order; raw and naq versions of each run back to back."""
        s, raw, nb = self.sizes, self.raw, self.naq
        r: dict[str, Any] = {}
        await raw.connect()
        try:
            r.update(
                await self._rounds(
                    {
                        "raw_publish_sequential": (lambda: raw.publish_sequential(s.enqueue), ""),
                        "raw_publish_sequential_with_record": (
                            lambda: raw.publish_sequential(s.enqueue, with_record=True),
                            "",
                        ),
                        "naq_enqueue_sequential": (lambda: nb.enqueue_sequential(s.enqueue), ""),
                        "naq_enqueue_sync": (
                            lambda: asyncio.to_thread(nb.enqueue_sync_sequential, s.enqueue),
                            "",
                        ),
                    }
                )
            )
            r.update(
                await self._rounds(
                    {
                        "raw_publish_async": (lambda: raw.publish_pipelined(s.many), ""),
                        "raw_publish_async_with_record": (
                            lambda: raw.publish_pipelined(s.many, with_record=True),
                            "",
                        ),
                        "naq_enqueue_many": (lambda: nb.enqueue_many(s.many), ""),
                    }
                )
            )
            r.update(
                await self._rounds(
                    {
                        "raw_consume_ack": (lambda: raw.drain("ack", s.raw_process), "rate"),
                        "raw_consume_store_ack": (
                            lambda: raw.drain("store", s.raw_process),
                            "rate",
                        ),
                        "naq_process_noop_sync": (
                            lambda: nb.process("bench-noop", jobs.noop, s.process, 200),
                            "rate",
                        ),
                        "naq_process_noop_async": (
                            lambda: nb.process("bench-anoop", jobs.anoop, s.process, 200),
                            "rate",
                        ),
                        "naq_process_noop_events": (
                            lambda: nb.process(
                                "bench-noop-ev", jobs.noop, s.process, 200, "--events"
                            ),
                            "rate",
                        ),
                        "naq_process_noop_metrics": (
                            lambda: nb.process(
                                "bench-noop-mx",
                                jobs.noop,
                                s.process,
                                200,
                                "--metrics-port",
                                str(free_port("127.0.0.1")),
                            ),
                            "rate",
                        ),
                        "naq_process_noop_dashboard": (
                            lambda: self._with_dashboard(
                                nb.process("bench-noop-db", jobs.noop, s.process, 200, "--events")
                            ),
                            "rate",
                        ),
                        "naq_process_noop_signed": (
                            lambda: nb.process(
                                "bench-noop-sg",
                                jobs.noop,
                                s.process,
                                200,
                                SIGNING_FLAG,
                                BENCH_SIGNING_KEY,
                            ),
                            "rate",
                        ),
                        "naq_process_noop_hooks": (
                            lambda: nb.process(
                                "bench-noop-hk", jobs.noop, s.process, 200, "--hooks"
                            ),
                            "rate",
                        ),
                    },
                    # the feature rows are ratios of two noisy rates: more rounds
                    max(self.repeat, PROCESS_ROUNDS),
                )
            )
            r["raw_latency"] = await self._once("raw_latency", raw.latency(s.latency))
            r["naq_latency_sync"] = await self._once(
                "naq_latency_sync", nb.latency(s.latency, jobs.stamp)
            )
            r["naq_latency_async"] = await self._once(
                "naq_latency_async", nb.latency(s.latency, jobs.astamp)
            )
            r.update(
                await self._rounds(
                    {
                        "naq_sleep_async": (
                            lambda: nb.sleep_drain("bench-sleep", jobs.sleep10, s.sleep, 100),
                            "drain_s",
                        ),
                        "naq_sleep_sync": (
                            lambda: nb.sleep_drain(
                                "bench-sleep-sync", jobs.sleep10_sync, s.sleep, 100
                            ),
                            "drain_s",
                        ),
                    }
                )
            )
            r["naq_cli_idle_rss_mib"] = await self._once("naq_cli_idle_rss_mib", nb.cli_idle_rss())
            r.update(await self._dependencies())
            r.update(await self._priorities())
            r.update(await self._limits())
        finally:
            await naq.close()
            await raw.close()
        return r

    async def _with_dashboard(self, run: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """``run`` while ``naq dashboard`` serves 20 open overview pages (see
        :mod:`benchmarks.dashboard_bench`); the result notes what the pages received."""
        async with open_dashboard(self.url) as received:
            result = await run
            result["pages_received"] = dict(received)
        return result

    async def _dependencies(self) -> dict[str, Any]:
        """The ``depends_on`` scenarios, one run each (see :mod:`benchmarks.deps_bench`)."""
        s, deps = self.sizes, self.deps
        return {
            "naq_dep_release": await self._once(
                "naq_dep_release", deps.release_latency(s.dep_latency)
            ),
            "naq_fan_in": await self._once("naq_fan_in", deps.fan_in(s.fan_in)),
            "naq_fan_in_plain": await self._once("naq_fan_in_plain", deps.plain_burst(s.fan_in)),
            "naq_fan_out": await self._once("naq_fan_out", deps.fan_out(s.fan_out)),
        }

    async def _priorities(self) -> dict[str, Any]:
        """The ``priority=`` scenarios, one run each (see :mod:`benchmarks.priority_bench`)."""
        s, prio = self.sizes, self.prio
        return {
            "naq_prio_overtaking": await self._once(
                "naq_prio_overtaking", prio.overtaking(s.prio_backlog, s.prio_high)
            ),
            "naq_prio_latency": await self._once(
                "naq_prio_latency", prio.idle_latency(s.prio_latency)
            ),
        }

    async def _limits(self) -> dict[str, Any]:
        """The shared limit scenarios, one run each (see :mod:`benchmarks.limits_bench`)."""
        s, lim = self.sizes, self.limits
        return {
            "naq_limit_rate": await self._once(
                "naq_limit_rate", lim.shared_rate(s.limit_rate_jobs, s.limit_rate_window)
            ),
            "naq_limit_family": await self._once(
                "naq_limit_family", lim.family(s.limit_family_jobs, s.limit_family_keys)
            ),
            "naq_limit_plain": await self._once("naq_limit_plain", lim.plain(s.limit_family_jobs)),
        }


def _process_error(result: dict[str, Any]) -> str:
    if not result["wrong"]:
        return ""
    return (
        f"{result['wrong']}/{result['checked']} sampled jobs have no correct stored result "
        f"(statuses {result['statuses']})"
    )


def build_rows(s: Sizes, r: dict[str, Any]) -> list[Row]:
    """The table: one row per measured quantity, with its raw baseline and target."""
    seq, seq_raw = r["naq_enqueue_sequential"], r["raw_publish_sequential"]
    many, many_raw = r["naq_enqueue_many"], r["raw_publish_async"]
    noop, anoop = r["naq_process_noop_sync"], r["naq_process_noop_async"]
    events, hooked = r["naq_process_noop_events"], r["naq_process_noop_hooks"]
    metered = r["naq_process_noop_metrics"]
    signed = r["naq_process_noop_signed"]
    dashboard = r["naq_process_noop_dashboard"]
    store, ack = r["raw_consume_store_ack"], r["raw_consume_ack"]
    lat, alat, raw_lat = r["naq_latency_sync"], r["naq_latency_async"], r["raw_latency"]
    sleep, sleep_sync = r["naq_sleep_async"], r["naq_sleep_sync"]
    seq_note = "raw: sequential `await js.publish()`"
    store_note = "raw: hand-written pull, store result (PubAck awaited), then +ACK"
    return [
        Row("enqueue_seq", "enqueue, sequential `await q.enqueue()`", "jobs/s",
            seq, seq_raw, [Target("min_ratio", 0.7)], seq_note),
        Row("enqueue_sync", "enqueue, sequential `naq.enqueue_sync()`", "jobs/s",
            r["naq_enqueue_sync"], seq_raw, [Target("min_ratio", 0.7)], seq_note),
        Row("enqueue_many", f"`q.enqueue_many()`, {s.many:,} jobs", "jobs/s",
            many, many_raw, [Target("min_ratio", 0.7)],
            f"raw: `js.publish_async()` (window {ASYNC_WINDOW}) + `publish_async_completed()`"),
        Row("enqueue_seq_2w", "enqueue, sequential, vs raw job + record writes", "jobs/s",
            seq, r["raw_publish_sequential_with_record"], [],
            "raw: `gather()` of 2 awaited publishes per job"),
        Row("enqueue_many_2w", "`q.enqueue_many()` vs raw writing a record per job too", "jobs/s",
            many, r["raw_publish_async_with_record"], [],
            "raw: 2 `publish_async()` per job (naq: the job, plus one batch record per chunk)"),
        Row("process_noop", f"process {s.process:,} no-op jobs, results stored (sync fn, c=200)",
            "jobs/s", noop["rate"], store["rate"],
            [Target("min", 15000), Target("min_ratio", 0.5)], store_note, _process_error(noop)),
        Row("process_noop_async", "same, async fn (c=200)", "jobs/s",
            anoop["rate"], store["rate"], [], "", _process_error(anoop)),
        Row("process_noop_vs_ack", "same, sync fn, vs raw consume + ack only", "jobs/s",
            noop["rate"], ack["rate"], [], "raw: hand-written pull, +ACK, no result"),
        Row("process_noop_events", "same, sync fn, events on (`NAQ_EVENTS=1`)", "jobs/s",
            events["rate"], noop["rate"], [Target("min_ratio", 0.9)],
            "baseline: the same run with events off (the first process row)",
            _process_error(events), "plain naq"),
        Row("process_noop_metrics", "same, sync fn, Prometheus metrics on (`--metrics-port`)",
            "jobs/s", metered["rate"], noop["rate"], [],
            "baseline: the same run without metrics (the first process row)",
            _process_error(metered), "plain naq"),
        Row("process_noop_dashboard",
            f"same, events on, `naq dashboard` with {PAGES} live overview pages open",
            "jobs/s", dashboard["rate"], events["rate"], [Target("min_ratio", 0.95)],
            "baseline: the events-on row (same run, no dashboard); the pages' streams are "
            f"read throughout ({dashboard.get('pages_received', {}).get('messages', 0):,} "
            "SSE messages)", _process_error(dashboard), "plain naq"),
        Row("process_noop_hooks", "same, sync fn, a no-op `before_job` + `after_job` hook",
            "jobs/s", hooked["rate"], noop["rate"], [],
            "baseline: the same run without hooks (the first process row)",
            _process_error(hooked), "plain naq"),
        Row("process_noop_signed",
            "same, sync fn, jobs signed (`NAQ_SIGNING_KEY`): checked, and claimed once each",
            "jobs/s", signed["rate"], noop["rate"], [],
            "baseline: the same run unsigned (the first process row); a claim is one more "
            "record write per job", _process_error(signed), "plain naq"),
        Row("latency_start_p50", "latency enqueue → start p50 (idle worker, sync fn)", "ms",
            lat["start_p50"], raw_lat["start_p50"], [], "raw: publish → consumer callback",
            lat["error"] or ""),
        Row("latency_start_p99", "latency enqueue → start p99", "ms",
            lat["start_p99"], raw_lat["start_p99"]),
        Row("latency_result_p50", "latency enqueue → result p50 (idle worker, sync fn)", "ms",
            lat["result_p50"], raw_lat["result_p50"], [Target("max", 2.0)],
            "raw: publish → result message seen by the producer", lat["error"] or ""),
        Row("latency_result_p99", "latency enqueue → result p99", "ms",
            lat["result_p99"], raw_lat["result_p99"], [Target("max", 10.0)], "",
            lat["error"] or ""),
        Row("latency_async_result_p50", "latency enqueue → result p50, async fn", "ms",
            alat["result_p50"], raw_lat["result_p50"], [], "", alat["error"] or ""),
        Row("latency_async_result_p99", "latency enqueue → result p99, async fn", "ms",
            alat["result_p99"], raw_lat["result_p99"], [], "", alat["error"] or ""),
        *_dependency_rows(s, r),
        *_priority_rows(s, r),
        *_limit_rows(s, r),
        Row("sleep_async", f"{s.sleep:,} × 10 ms `asyncio.sleep` jobs, c=100: drain", "s",
            sleep["drain_s"], None, [Target("max", 0.4)],
            f"first job start → last result stored; ideal {sleep['ideal_s']:g} s"),
        Row("sleep_sync", f"{s.sleep:,} × 10 ms `time.sleep` jobs, c=100 threads: drain", "s",
            sleep_sync["drain_s"], None),
        Row("rss_idle", "worker RSS, idle (c=10)", "MiB", lat["idle_rss_mib"],
            raw_lat["idle_rss_mib"], [Target("max", 80)], "raw: the idle raw consumer process"),
        Row("rss_idle_cli", "worker RSS, idle `naq worker` CLI (c=10)", "MiB",
            r["naq_cli_idle_rss_mib"], None),
        Row("rss_load", "worker peak RSS, no-op load (sync fn, c=200)", "MiB",
            noop["peak_rss_mib"], store["peak_rss_mib"], [], "raw: the raw store consumer's peak"),
    ]  # fmt: skip


def _dependency_rows(s: Sizes, r: dict[str, Any]) -> list[Row]:
    """Rows of the ``depends_on`` scenarios; their baseline is naq without dependencies."""
    rel, lat = r["naq_dep_release"], r["naq_latency_sync"]
    fan_in, plain, fan_out = r["naq_fan_in"], r["naq_fan_in_plain"], r["naq_fan_out"]
    base = "plain naq"
    return [
        Row("dep_release_p50", "latency dependency done → dependant start p50",
            "ms", rel["release_p50"], lat["start_p50"], [Target("max_ratio", 2.0)],
            "plain naq: enqueue → start of a job without dependencies (above); naq: the "
            "parent's `finished_at` → the dependant's own start time",
            rel["error"] or "", base),
        Row("dep_release_p99", "latency dependency done → dependant start p99", "ms",
            rel["release_p99"], lat["start_p99"], [Target("max_ratio", 2.0)], "",
            rel["error"] or "", base),
        Row("dep_fan_in", f"fan-in: 1 job depending on {s.fan_in:,} jobs, enqueue + run", "s",
            fan_in["wall_s"], None, [],
            f"enqueue {fan_in['enqueue_parents_s'] + fan_in['enqueue_fan_in_job_s']:.3f} s "
            f"(of which the dependant {fan_in['enqueue_fan_in_job_s']:.3f} s) + first parent "
            f"start → dependant finished {fan_in['run_s']:.3f} s; worker start-up not counted",
            fan_in["error"]),
        Row("dep_fan_in_rate", f"fan-in: the {s.fan_in:,} parents processed (sync fn, c=200)",
            "jobs/s", fan_in["parents_rate"], plain["rate"], [],
            f"plain naq: {s.fan_in:,} no-op jobs nobody depends on, same worker and timing",
            "; ".join(e for e in (fan_in["error"], plain["error"]) if e), base),
        Row("dep_fan_out_enqueue", f"`q.enqueue_many(depends_on=parent)`, {s.fan_out:,} jobs",
            "jobs/s", fan_out["enqueue_rate"], r["naq_enqueue_many"], [],
            f"plain naq: `q.enqueue_many()` of {s.many:,} jobs (above)", "", base),
        Row("dep_fan_out", f"fan-out: parent done → last of {s.fan_out:,} children done (c=200)",
            "s", fan_out["drain_s"], None, [],
            f"parent done → first child start {fan_out['first_release_s'] * 1000:.1f} ms",
            fan_out["error"]),
        Row("dep_fan_out_rate", "fan-out: children processed (sync fn, c=200)", "jobs/s",
            fan_out["rate"], r["naq_process_noop_sync"]["rate"], [],
            "plain naq: the no-op processing row (sync fn, c=200)", fan_out["error"], base),
    ]  # fmt: skip


def _priority_rows(s: Sizes, r: dict[str, Any]) -> list[Row]:
    """Rows of the ``priority=`` scenarios; their baseline is naq without a priority."""
    ov, idle, lat = r["naq_prio_overtaking"], r["naq_prio_latency"], r["naq_latency_sync"]
    c = ov["concurrency"]
    cold, warm = ov.get("cold", {}), ov.get("warm", {})
    base = "plain naq"
    busy = "plain naq: enqueue → start on an idle worker (above); here a slot must free first"
    stalls = (
        f"{idle['stalls']} of {idle['samples']} samples over {STALL_MS:g} ms "
        f"(max {idle['start_max']:.0f} ms)"
    )
    return [
        Row("prio_overtaken",
            f"priority: backlog jobs overtaking {s.prio_high} priority-9 jobs (c={c})", "jobs",
            ov["overtaken"], None, [Target("max", c)],
            f"started after the first priority-9 enqueue, before the last priority-9 start; "
            f"worse of 2 rounds over {s.prio_backlog:,} × 2 ms priority-0 jobs (first "
            f"{cold.get('overtaken')}, second {warm.get('overtaken')}); of them started while "
            f"a high job waited: {cold.get('overtook_waiting')}, {warm.get('overtook_waiting')}",
            ov["error"]),
        Row("prio_busy_start_p50", "latency priority-9 enqueue → start p50, busy worker (c=10)",
            "ms", ov["high_start_p50"], lat["start_p50"], [], busy, ov["error"], base),
        Row("prio_busy_start_p99", "latency priority-9 enqueue → start p99, busy worker",
            "ms", ov["high_start_p99"], lat["start_p99"], [], "", ov["error"], base),
        Row("prio_idle_start_p50", "latency priority-9 enqueue → start p50 (idle worker)",
            "ms", idle["start_p50"], lat["start_p50"], [], stalls, idle["error"], base),
        Row("prio_idle_start_p99", "latency priority-9 enqueue → start p99 (idle worker)",
            "ms", idle["start_p99"], lat["start_p99"], [], "", idle["error"], base),
    ]  # fmt: skip


def _limit_rows(s: Sizes, r: dict[str, Any]) -> list[Row]:
    """Rows of the shared limit scenarios: the rate against the limit itself, the family
    against the same jobs without limits and against the no-op processing row."""
    rate, fam, plain = r["naq_limit_rate"], r["naq_limit_family"], r["naq_limit_plain"]
    base = "plain naq"
    ideal_burst = rate["burst_allowed"] + rate["limit"]
    family_note = (
        f'{s.limit_family_jobs:,} × `noop(i)` with `limits=[f"bench-user:{{i % '
        f'{s.limit_family_keys}}}"]`, one `enqueue` each, one burst worker process; '
        f"{fam['sent_back']:,} deliveries sent back for a busy key"
    )
    return [
        Row("limit_rate",
            f"shared `{RATE}/s` limit, {rate['workers']} worker processes "
            f"(c={rate['concurrency']} each): achieved start rate", "jobs/s",
            rate["rate"], rate["limit"], [Target("near_ratio", 0.05)],
            f"{s.limit_rate_jobs:,} no-op jobs; starts within {s.limit_rate_window:g} s after "
            f"the first {RATE_WARMUP_S:g} s (records' `started_at`); at most "
            f"{rate['most_in_any_second']} started within any second; "
            f"{rate['sent_back']:,} deliveries sent back; starts per worker "
            f"{rate['starts_per_worker']}",
            rate["error"], "the limit"),
        Row("limit_rate_burst", "same: jobs started in the first second", "jobs",
            rate["first_second"], ideal_burst, [],
            f"the limit lets {rate['burst_allowed']} start at once, then {RATE}/s",
            rate["error"], "ideal"),
        Row("limit_family",
            f"concurrency-1 family, {s.limit_family_keys:,} keys: {s.limit_family_jobs:,} "
            "no-op jobs processed (sync fn, c=200)", "jobs/s",
            fam["rate"], plain["rate"], [], family_note,
            "; ".join(e for e in (fam["error"], plain["error"]) if e), base),
        Row("limit_family_vs_noop", "same, vs the no-op processing row", "jobs/s",
            fam["rate"], r["naq_process_noop_sync"]["rate"], [],
            f"plain naq: {s.process:,} no-op jobs from `enqueue_many` (above); the same "
            f"{s.limit_family_jobs:,} jobs without limits: {plain['rate']:,.0f} jobs/s",
            fam["error"], base),
    ]  # fmt: skip


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


def _meta(
    args: argparse.Namespace, sizes: Sizes, seconds: float, load_before: float
) -> dict[str, Any]:
    server = subprocess.run(
        [find_nats_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "naq": naq.__version__,
        "nats_py": metadata.version("nats-py"),
        "nats_server": server,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "event_loop": "uvloop" if args.uvloop else "asyncio",
        "quick": args.quick,
        "repeat": args.repeat,
        "sizes": sizes.__dict__,
        "payload_bytes_raw": PAYLOAD_SIZE,
        "seconds": round(seconds, 1),
        "load_avg_1min_before": round(load_before, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }


def _title(meta: dict[str, Any]) -> str:
    return (
        f"naq {meta['naq']} vs raw nats-py {meta['nats_py']} ({meta['nats_server']}, "
        f"Python {meta['python']}, {meta['cpus']} CPUs, {meta['event_loop']}, "
        f"median of {meta['repeat']}{', QUICK' if meta['quick'] else ''})"
    )


def update_docs(title: str, rows: list[Row], meta: dict[str, Any]) -> None:
    """Replace the table between the markers in docs/performance.md."""
    text = DOCS.read_text()
    if DOCS_START not in text or DOCS_END not in text:
        raise SystemExit(f"{DOCS} has no {DOCS_START} ... {DOCS_END} section")
    head, rest = text.split(DOCS_START, 1)
    _old, tail = rest.split(DOCS_END, 1)
    load = f"load average {meta.get('load_avg_1min_before', '?')} before the run"
    body = f"\n{title}, {meta['date']}, CPU: {meta['cpu']}, {load}\n\n{markdown_table(rows)}\n"
    DOCS.write_text(head + DOCS_START + body + DOCS_END + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N: a quick sanity check")
    parser.add_argument("--repeat", type=int, default=None, help="runs per throughput row")
    parser.add_argument("--uvloop", action="store_true", help="uvloop in every process")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--update-docs", action="store_true", help="rewrite docs table")
    parser.add_argument(
        "--docs-from",
        type=Path,
        metavar="JSON",
        help="only rewrite the docs table from a saved run",
    )
    args = parser.parse_args(argv)
    if args.docs_from:
        meta, rows = load_json(args.docs_from)
        update_docs(_title(meta), rows, meta)
        print(f"updated {DOCS.relative_to(ROOT)} from {args.docs_from}")
        return 0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    sizes = Sizes.quick() if args.quick else Sizes()
    out = args.out or ROOT / "benchmarks" / "results" / (
        "quick.json" if args.quick else "latest.json"
    )
    naq.setup_logging("WARNING")
    load_before = os.getloadavg()[0]
    if load_before > BUSY_LOAD:
        print(f"warning: load average {load_before:.2f}: other processes will skew the numbers")
    started = time.perf_counter()
    with EmbeddedServer() as server:
        runner = Runner(server.url, sizes, args.repeat, args.uvloop)
        rows = build_rows(sizes, run_async(runner.run(), args.uvloop))
    meta = _meta(args, sizes, time.perf_counter() - started, load_before)
    title = _title(meta)
    print_table(rows, title)
    save_json(out, meta, rows, runner.details)
    print(f"results saved to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if args.update_docs:
        update_docs(title, rows, meta)
        print(f"updated {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
