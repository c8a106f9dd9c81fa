"""Pure scheduling logic: cron/interval maths, time zones, misfire decisions, run ids, the
leader's timeline, and input validation (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from naq.errors import ConfigurationError
from naq.models import JobEnvelope
from naq.names import is_job_id
from naq.scheduling.misfire import plan
from naq.scheduling.models import ScheduleRecord, decode_schedule, encode_schedule
from naq.scheduling.recurrence import Recurrence, parse_cron
from naq.scheduling.runs import run_job_id
from naq.scheduling.timeline import Timeline
from naq.scheduling.timeutil import MAX_AT, check_when, delay_seconds, rfc3339, to_utc


def ts(*args: int, tz: timezone | ZoneInfo = UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


# --------------------------------------------------------------------------- cron / interval


def test_five_and_six_field_cron() -> None:
    assert parse_cron("*/5  * * * *") == ("*/5 * * * *", False)
    assert parse_cron("*/1 * * * * *") == ("*/1 * * * * *", True)
    assert parse_cron("@hourly") == ("@hourly", False)
    every_second = Recurrence.build(cron="*/1 * * * * *")
    assert every_second.next_after(ts(2026, 1, 1, 0, 0, 0) + 0.3) == ts(2026, 1, 1, 0, 0, 1)
    # seconds come first in 6 fields: "30 * * * * *" is second 30 of every minute
    sec30 = Recurrence.build(cron="30 * * * * *")
    assert sec30.next_after(ts(2026, 1, 1, 0, 0, 0)) == ts(2026, 1, 1, 0, 0, 30)
    five = Recurrence.build(cron="*/15 * * * *")
    assert five.next_after(ts(2026, 1, 1, 0, 0, 0)) == ts(2026, 1, 1, 0, 15, 0)
    assert five.next_after(ts(2026, 1, 1, 0, 14, 59) + 0.999) == ts(2026, 1, 1, 0, 15, 0)


@pytest.mark.parametrize("expr", ["61 * * * *", "* * * *", "* * * * * * *", "", "H * * * *"])
def test_invalid_cron(expr: str) -> None:
    with pytest.raises(ConfigurationError, match="cron"):
        Recurrence.build(cron=expr)


def test_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="never fires"):
        Recurrence.build(cron="0 0 30 2 *")


def test_next_and_last_run_are_strict_and_inclusive() -> None:
    rule = Recurrence.build(cron="*/5 * * * * *")
    t10 = ts(2026, 1, 1, 0, 0, 10)
    assert rule.next_after(t10) == t10 + 5  # strictly after
    assert rule.last_at_or_before(t10) == t10  # at or before
    assert rule.last_at_or_before(t10 - 0.0005) == t10 - 5
    assert rule.last_at_or_before(t10 + 4.9) == t10


def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rule = Recurrence.build(cron="0 9 * * *", timezone="Europe/Berlin")
    winter = rule.next_after(ts(2026, 1, 15, 0, 0))
    summer = rule.next_after(ts(2026, 7, 15, 0, 0))
    assert datetime.fromtimestamp(winter, UTC).hour == 8  # UTC+1
    assert datetime.fromtimestamp(summer, UTC).hour == 7  # UTC+2
    assert datetime.fromtimestamp(summer, berlin).hour == 9
    # the night clocks jump: 02:30 does not exist on 2026-03-29 in Berlin
    jump = Recurrence.build(cron="30 2 * * *", timezone="Europe/Berlin")
    nxt = jump.next_after(ts(2026, 3, 29, 0, 0, tz=berlin))
    assert datetime.fromtimestamp(nxt, berlin).date() >= datetime(2026, 3, 29).date()


def test_time_zone_validation() -> None:
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        Recurrence.build(cron="* * * * *", timezone="Europe/Nowhere")
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        Recurrence.build(cron="* * * * *", timezone="+02:00")
    with pytest.raises(ConfigurationError, match="cron schedules only"):
        Recurrence.build(interval=5, timezone="UTC")


def test_exactly_one_of_cron_and_interval() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        Recurrence.build()
    with pytest.raises(ConfigurationError, match="exactly one"):
        Recurrence.build(cron="* * * * *", interval=1)


def test_interval_is_anchored_at_its_start() -> None:
    rule = Recurrence.build(interval=timedelta(seconds=1.5), anchor=100.0)
    assert rule.interval == 1.5
    assert rule.next_after(100.0) == 101.5
    assert rule.next_after(101.0) == 101.5
    assert rule.next_after(101.5) == 103.0
    assert rule.last_at_or_before(104.0) == 103.0
    assert rule.last_at_or_before(103.0) == 103.0
    with pytest.raises(ConfigurationError, match="at least"):
        Recurrence.build(interval=0)
    with pytest.raises(ConfigurationError, match="at least"):
        Recurrence.build(interval=float("inf"))


# --------------------------------------------------------------------------- misfire


def test_on_time_run_fires_under_both_policies() -> None:
    rule = Recurrence.build(interval=10, anchor=0.0)
    for policy in ("once", "skip"):
        decision = plan(rule, due=100.0, now=100.05, policy=policy, grace=1.0)
        assert (decision.fire_at, decision.next_run, decision.missed) == (100.0, 110.0, False)


def test_after_downtime_once_fires_a_single_catch_up_run() -> None:
    rule = Recurrence.build(interval=10, anchor=0.0)
    # down from 95 to 1003: the runs at 100, 110, ..., 1000 were all missed
    decision = plan(rule, due=100.0, now=1003.0, policy="once", grace=1.0)
    assert decision.fire_at == 1000.0  # one run, for the latest missed time
    assert decision.next_run == 1010.0
    assert decision.missed


def test_after_downtime_skip_fires_nothing_late() -> None:
    rule = Recurrence.build(interval=10, anchor=0.0)
    decision = plan(rule, due=100.0, now=1003.0, policy="skip", grace=1.0)
    assert decision.fire_at is None and decision.next_run == 1010.0 and decision.missed
    # ... but the latest run is on time when the scheduler is back within grace of it
    decision = plan(rule, due=100.0, now=1000.5, policy="skip", grace=1.0)
    assert decision.fire_at == 1000.0 and decision.missed


def test_a_single_late_run_is_a_misfire_only_beyond_grace() -> None:
    rule = Recurrence.build(cron="0 * * * *")
    due = ts(2026, 1, 1, 10, 0)
    assert plan(rule, due, due + 0.9, "skip", 1.0).fire_at == due
    late = plan(rule, due, due + 120, "skip", 1.0)
    assert late.fire_at is None and late.next_run == ts(2026, 1, 1, 11, 0)
    assert plan(rule, due, due + 120, "once", 1.0).fire_at == due


def test_misfire_cost_does_not_grow_with_missed_runs() -> None:
    rule = Recurrence.build(cron="*/1 * * * * *")
    due = ts(2020, 1, 1, 0, 0, 0)
    decision = plan(rule, due, ts(2026, 1, 1, 0, 0, 0) + 0.5, "once", 1.0)  # 6 years of seconds
    assert decision.fire_at == ts(2026, 1, 1, 0, 0, 0)
    assert decision.next_run == ts(2026, 1, 1, 0, 0, 1)


def test_precomputed_successor_gives_the_same_plan() -> None:
    rule = Recurrence.build(cron="*/5 * * * * *")
    due = ts(2026, 1, 1, 0, 0, 5)
    assert plan(rule, due, due + 0.01, "once", 1.0, successor=due + 5) == plan(
        rule, due, due + 0.01, "once", 1.0
    )


# --------------------------------------------------------------------------- ids, times, storage


def test_run_job_ids_are_deterministic_valid_and_distinct() -> None:
    t = ts(2026, 1, 2, 3, 0, 0)
    assert run_job_id("nightly", t) == "nightly-20260102T030000Z"
    assert run_job_id("nightly", t + 0.25) == "nightly-20260102T030000250Z"
    assert run_job_id("nightly", t) == run_job_id("nightly", t)
    longest = run_job_id("x" * 100, t + 0.999)
    assert is_job_id(longest)
    assert len({run_job_id("s", t + i * 0.001) for i in range(2000)}) == 2000


def test_times() -> None:
    naive = datetime(2030, 5, 1, 12, 0)
    assert to_utc(naive) == datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    aware = datetime(2030, 5, 1, 14, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert check_when(aware) == datetime(2030, 5, 1, 12, 0, tzinfo=UTC).timestamp()
    assert rfc3339(ts(2030, 5, 1, 12, 0)) == "2030-05-01T12:00:00.000000Z"
    assert check_when(MAX_AT) == MAX_AT.timestamp()
    with pytest.raises(ConfigurationError, match="too far ahead"):
        check_when(MAX_AT + timedelta(seconds=1))
    with pytest.raises(ConfigurationError, match="must be a datetime"):
        check_when(1234.0)
    assert delay_seconds(timedelta(minutes=2)) == 120.0
    for bad in (-1, float("nan"), "5", True):
        with pytest.raises(ConfigurationError):
            delay_seconds(bad)


def test_schedule_record_is_json_and_round_trips() -> None:
    record = ScheduleRecord(
        schedule_id="s",
        queue="q",
        template=JobEnvelope(id="s", fn="m:f", queue="q", args=[1, {"x": [2]}]),
        cron="*/5 * * * * *",
        timezone="Europe/Berlin",
        repeat=3,
        next_run=123.5,
    )
    raw = encode_schedule(record)
    assert raw.startswith(b"{") and b"pickle" not in raw
    assert decode_schedule(raw) == record
    assert decode_schedule(raw[:-1] + b',"future_field":1}') == record  # unknown fields ignored


# --------------------------------------------------------------------------- timeline


def _rec(sid: str, next_run: float | None, status: str = "active") -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=sid,
        queue="q",
        template=JobEnvelope(id=sid, fn="m:f", queue="q"),
        interval=1.0,
        status=status,
        next_run=next_run,
    )


def test_timeline_pops_only_due_and_current_entries() -> None:
    line = Timeline()
    line.apply(_rec("a", 10.0), 1)
    line.apply(_rec("b", 20.0), 2)
    line.apply(_rec("c", 5.0), 3)
    assert line.next_due() == 5.0
    assert not line.apply(_rec("c", 50.0), 3)  # not newer: ignored
    line.apply(_rec("c", 15.0), 4)  # moved later: the old heap entry is stale
    line.apply(_rec("a", 10.0, "paused"), 5)  # paused: not due any more
    assert line.next_due() == 15.0
    assert [r.schedule_id for r, _ in line.pop_due(16.0)] == ["c"]
    assert line.pop_due(16.0) == []
    line.remove("b", 6)
    assert line.next_due() is None and len(line) == 2


def test_timeline_heap_stays_bounded() -> None:
    line = Timeline()
    for revision in range(1, 20_000):
        line.apply(_rec("a", float(revision)), revision)
    assert len(line._heap) <= 2 * len(line) + 1024
