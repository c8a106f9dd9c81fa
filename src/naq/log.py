"""Logging through loguru: naq adds its own sink and never removes sinks the host added."""

from __future__ import annotations

import sys

from loguru import logger

_sink_id: int | None = None


def setup_logging(level: str = "INFO") -> None:
    """Send naq's log records at ``level`` and above to stderr (replacing naq's own sink only).

    Loguru's default handler (id 0) is removed the first time, since it would print every
    record twice; sinks the application added stay as they are.
    """
    global _sink_id
    if _sink_id is not None:
        try:
            logger.remove(_sink_id)
        except ValueError:
            pass
    else:
        try:
            logger.remove(0)  # loguru's default stderr sink, if still there
        except ValueError:
            pass
    _sink_id = logger.add(
        sys.stderr,
        level=level.upper(),
        format="<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}",
        filter=lambda record: record["name"] is not None and record["name"].startswith("naq"),
    )
