"""When a recurring schedule runs: cron (5 fields, or 6 with seconds first) in an IANA time
zone, or a fixed interval anchored at its first run. Pure maths, validated at the call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..errors import ConfigurationError
from .timeutil import MAX_AT_TS

_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
#: Shortest interval accepted, seconds (run ids have millisecond resolution).
MIN_INTERVAL = 0.01
_EPS = 1e-6


def parse_timezone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Berlin``); ConfigurationError if unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(
            f"timezone must be an IANA name like 'Europe/Berlin', not {name!r}"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigurationError(
            f"unknown time zone {name!r}: use an IANA name like 'Europe/Berlin' or 'UTC'"
        ) from None


def parse_cron(expr: object) -> tuple[str, bool]:
    """Validate a cron expression; returns it normalized and whether it has a seconds field.

    5 fields: ``min hour dom mon dow``; 6 fields: ``sec min hour dom mon dow`` (seconds first,
    as nats-server, Quartz and Spring read it); or an alias such as ``@hourly``.
    """
    if not isinstance(expr, str):
        raise ConfigurationError(f"cron must be a string, not {type(expr).__name__}")
    fields = expr.split()
    text = " ".join(fields)
    if len(fields) == 1 and text.lower() in _ALIASES:
        return text.lower(), False
    if len(fields) not in (5, 6):
        raise ConfigurationError(
            f"invalid cron {expr!r}: expected 5 fields (min hour day month weekday) or 6 "
            "(sec min hour day month weekday)"
        )
    seconds = len(fields) == 6
    try:
        valid = croniter.is_valid(text, second_at_beginning=seconds)
    except Exception:  # noqa: BLE001 - croniter raises assorted types for odd input
        valid = False
    if not valid:
        raise ConfigurationError(f"invalid cron {expr!r}")
    return text, seconds


def parse_interval(value: object) -> float:
    """An interval in seconds from a number or a timedelta (> 0)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"interval must be seconds or a timedelta, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < MIN_INTERVAL:
        raise ConfigurationError(f"interval must be at least {MIN_INTERVAL} s, got {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Recurrence:
    """A validated cron or interval rule; ``next_after``/``last_at_or_before`` give run times."""

    cron: str | None = None
    interval: float | None = None
    timezone: str | None = None
    anchor: float = 0.0  # interval rules run at anchor + k * interval

    @classmethod
    def build(
        cls,
        cron: object = None,
        interval: object = None,
        timezone: object = None,
        anchor: float = 0.0,
    ) -> Recurrence:
        """Validate: exactly one of ``cron``/``interval``; ``timezone`` only with cron."""
        if (cron is None) == (interval is None):
            raise ConfigurationError("give exactly one of cron=... or interval=...")
        if cron is not None:
            text, _ = parse_cron(cron)
            zone = None
            if timezone is not None:
                parse_timezone(timezone)
                zone = str(timezone)
            rule = cls(cron=text, timezone=zone)
            rule.check_fires(anchor)
            return rule
        if timezone is not None:
            raise ConfigurationError(
                "timezone applies to cron schedules only (an interval is the same in every zone)"
            )
        return cls(interval=parse_interval(interval), anchor=anchor)

    @property
    def _zone(self) -> tzinfo:
        return ZoneInfo(self.timezone or "UTC")

    def _iter(self, ts: float) -> Any:
        assert self.cron is not None
        start = datetime.fromtimestamp(ts, self._zone)
        return croniter(self.cron, start, second_at_beginning=len(self.cron.split()) == 6)

    def check_fires(self, now: float) -> None:
        """ConfigurationError if a cron rule never fires (e.g. 30 February)."""
        try:
            nxt = self.next_after(now)
        except Exception:  # noqa: BLE001 - croniter's CroniterBadDateError and friends
            nxt = math.inf
        if nxt > MAX_AT_TS:
            raise ConfigurationError(f"cron {self.cron!r} never fires")

    def next_after(self, ts: float) -> float:
        """The first run time strictly after ``ts``."""
        if self.interval is not None:
            k = math.floor((ts - self.anchor) / self.interval + _EPS) + 1
            nxt = self.anchor + k * self.interval
            return nxt if nxt > ts else nxt + self.interval
        return float(self._iter(ts).get_next(float))

    def last_at_or_before(self, ts: float) -> float:
        """The latest run time ``<= ts``."""
        if self.interval is not None:
            k = math.floor((ts - self.anchor) / self.interval + _EPS)
            return self.anchor + k * self.interval
        # cron times are whole seconds and croniter's get_prev is strictly before its start
        return float(self._iter(math.floor(ts) + 0.5).get_prev(float))

    def describe(self) -> str:
        """Human-readable rule (for listings)."""
        if self.cron is not None:
            return f"cron {self.cron}" + (f" ({self.timezone})" if self.timezone else "")
        return f"every {self.interval:g}s"
