"""How the CLI shows times: moments in UTC, how long ago something happened, how long
something lasted."""

from __future__ import annotations

from datetime import UTC, datetime


def when_text(moment: datetime | None) -> str:
    """``moment`` as ``YYYY-MM-DD HH:MM:SS UTC`` (to the second), or ``-`` for ``None``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age_text(moment: datetime, now: datetime) -> str:
    """How long before ``now`` ``moment`` was, e.g. ``2.5s ago`` (never negative: another
    host's clock may run a little ahead)."""
    seconds = max(0.0, (now - moment).total_seconds())
    return f"{seconds:.1f}s ago"


def duration_text(seconds: float) -> str:
    """A length of time, short and to a sensible precision: ``850ms``, ``4.2s``,
    ``12m05s``, ``3h07m``, ``2d04h`` (negative counts as 0)."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
