"""Checking a :class:`~naq.Worker`'s options, and naming it."""

from __future__ import annotations

import uuid

from ..errors import ConfigurationError
from ..names import check_worker_name


def check_options(
    concurrency: object,
    shutdown_timeout: object,
    heartbeat_interval: object,
    ack_wait: object,
    max_crashes: object,
) -> None:
    """Raise :class:`ConfigurationError` naming the first option that is out of range."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    for name, value, least in (
        ("shutdown_timeout", shutdown_timeout, 0.0),
        ("heartbeat_interval", heartbeat_interval, None),  # None: > 0
        ("ack_wait", ack_wait, 1.0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")
        if (least is None and value <= 0) or (least is not None and value < least):
            raise ConfigurationError("heartbeat_interval must be > 0 and ack_wait >= 1 s")
    if isinstance(max_crashes, bool) or not isinstance(max_crashes, int) or max_crashes < 0:
        raise ConfigurationError(f"max_crashes must be an integer >= 0, got {max_crashes!r}")


def refuse_original_options(worker_ttl: object) -> None:
    """Refuse an option of the original naq's ``Worker`` that naq has no use for, saying what
    to write instead (its programs fail at the call, not later)."""
    if worker_ttl is not None:
        raise ConfigurationError(
            f"worker_ttl={worker_ttl!r} is the original naq's option; naq keeps a worker listed "
            "for three heartbeats after its last one: pass heartbeat_interval= (seconds) instead"
        )


def new_worker_id(worker_name: str | None) -> str:
    """``<worker_name>-<8 hex>`` (``worker-<8 hex>`` without a name)."""
    name = "worker" if worker_name is None else check_worker_name(worker_name)
    return f"{name}-{uuid.uuid4().hex[:8]}"
