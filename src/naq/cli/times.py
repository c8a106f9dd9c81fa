"""How the CLI shows times: moments in UTC, and how long ago something happened."""

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
