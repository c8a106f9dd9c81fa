"""The job functions of the dependencies example (the worker imports them as ``tasks``)."""

from __future__ import annotations

import naq


def download(url: str) -> str:
    """Pretend to download ``url``; returns where the file is."""
    if not url.startswith("https://"):
        raise ValueError(f"refusing to download {url!r}: not https")
    return "/tmp/" + url.rsplit("/", 1)[-1]


def resize(width: int) -> str:
    """Resize what the one dependency (``download``) returned."""
    (path,) = naq.current_job().dependency_results.values()
    return f"{path}@{width}"


def publish() -> list[str]:
    """Collect what every dependency (the resizes) returned."""
    return sorted(naq.current_job().dependency_results.values())
