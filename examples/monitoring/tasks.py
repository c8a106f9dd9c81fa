"""The job functions of the monitoring example (the worker imports them as ``tasks``)."""

from __future__ import annotations


def resize(width: int) -> str:
    """A job that completes."""
    return f"resized to {width}px"


def corrupt_upload(name: str) -> str:
    """A job that always fails."""
    raise ValueError(f"{name} is not an image")
