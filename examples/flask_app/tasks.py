"""The job functions of the Flask example (the worker imports them as ``tasks``)."""

from __future__ import annotations


def make_thumbnail(image: str, size: int) -> str:
    """Pretend to resize ``image`` to ``size`` pixels; returns the thumbnail's name."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    stem, _, ext = image.rpartition(".")
    return f"{stem}-{size}px.{ext}"
