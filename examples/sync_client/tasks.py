"""The job functions of the sync client example (the worker imports them as ``tasks``)."""

from __future__ import annotations


def word_count(text: str) -> int:
    """How many words ``text`` has."""
    return len(text.split())


def square(n: int) -> int:
    """``n`` squared."""
    return n * n
