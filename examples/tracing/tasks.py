"""The job functions of the tracing example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import asyncio

PRICES = {"apple": 1.25, "pear": 0.8}


def price(item: str, count: int) -> float:
    """What ``count`` of ``item`` cost; an unknown item raises ValueError."""
    if item not in PRICES:
        raise ValueError(f"no price for {item!r}")
    return round(PRICES[item] * count, 2)


async def slow_total(items: list[str]) -> float:
    """An async job: the price of one of each of ``items``, after a short wait."""
    await asyncio.sleep(0.05)
    return round(sum(PRICES[item] for item in items), 2)
