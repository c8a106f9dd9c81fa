"""Time helpers for scheduling: everything is stored as UTC epoch seconds (float) and sent to
the server as RFC 3339 UTC. Naive datetimes given by users are UTC."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from ..errors import ConfigurationError

#: The latest ``@at`` time nats-server handles. It keeps schedule times as int64 nanoseconds;
#: a later time overflows and the server fires the message **at once** (probed on 2.15.1:
#: 2262-04-11T23:47:16.854775Z is kept, one microsecond later fires immediately).
MAX_AT = datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)
MAX_AT_TS = MAX_AT.timestamp()


def to_utc(when: datetime) -> datetime:
    """``when`` as an aware UTC datetime (naive = already UTC)."""
    if when.tzinfo is None or when.tzinfo.utcoffset(when) is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def from_ts(ts: float | None) -> datetime | None:
    """Aware UTC datetime of an epoch timestamp (``None`` stays ``None``)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC with microseconds, as ``@at`` accepts it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 / ISO 8601 time (naive = UTC)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(f"{text!r} is not an ISO 8601 date and time") from None
    return to_utc(parsed).timestamp()


def check_when(when: object, what: str = "when") -> float:
    """Validate a run time: an aware or naive (UTC) datetime not beyond :data:`MAX_AT`."""
    if not isinstance(when, datetime):
        raise ConfigurationError(f"{what} must be a datetime, not {type(when).__name__}")
    ts = to_utc(when).timestamp()
    if ts > MAX_AT_TS:
        raise ConfigurationError(
            f"{what} {when.isoformat()} is too far ahead: nats-server schedules run at the "
            f"latest at {MAX_AT.isoformat()}"
        )
    return ts


def delay_seconds(delay: object, what: str = "delay") -> float:
    """Validate a delay (timedelta or seconds, >= 0) and return it in seconds."""
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise ConfigurationError(
            f"{what} must be a timedelta or a number of seconds, not {type(delay).__name__}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise ConfigurationError(f"{what} must be >= 0 seconds, got {delay!r}")
    if time.time() + seconds > MAX_AT_TS:
        raise ConfigurationError(
            f"{what} of {seconds:g} s is too far ahead: nats-server schedules run at the "
            f"latest at {MAX_AT.isoformat()}"
        )
    return seconds


def run_time_when(value: object, what: str = "next_run") -> float:
    """A run time given as a datetime (naive = UTC) or as a delay from now."""
    if isinstance(value, datetime):
        return check_when(value, what)
    return time.time() + delay_seconds(value, what)
