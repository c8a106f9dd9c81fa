"""Stored times (epoch seconds) as the aware UTC datetimes that public records carry."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import overload

#: The earliest and latest moments a ``datetime`` can hold, in UTC.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


@overload
def from_epoch(ts: float) -> datetime: ...


@overload
def from_epoch(ts: None) -> None: ...


def from_epoch(ts: float | None) -> datetime | None:
    """``ts`` (epoch seconds) as an aware UTC datetime; ``None`` stays ``None``.

    A time no ``datetime`` can hold (before year 1, after year 9999) reads as the nearest one
    it can (:data:`EARLIEST` / :data:`LATEST`, NaN as :data:`EARLIEST`), so one odd stored
    record cannot break a listing.
    """
    if ts is None:
        return None
    if math.isnan(ts):
        return EARLIEST
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return LATEST if ts > 0 else EARLIEST
