"""The job functions of the error reporting example (the worker imports them as ``tasks``)."""

from __future__ import annotations


def parse_quantity(text: str) -> int:
    """``text`` as a positive whole number; anything else raises ValueError."""
    value = int(text)  # ValueError for "twelve"
    if value <= 0:
        raise ValueError(f"quantity must be positive, got {value}")
    return value
