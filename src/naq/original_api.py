"""The original naq's top-level names that naq does not have, and what to write instead.

``from naq import get_nats_connection`` in a program written for the original naq imports a
stand-in: calling it (or reading any attribute of it) raises :class:`~naq.errors.NaqException`
at that line, with a message naming naq's way of doing the same thing. A stand-in never runs
anything. The few names naq has under another name (:data:`RENAMED`) give naq's object itself.

``naq.__getattr__`` serves both, so none of these names is part of ``naq.__all__``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import api
from .errors import NaqException
from .settings import DEFAULT_NATS_URL, load_settings

_RAW_NATS = (
    "naq does not hand out its NATS connections: it connects on first use (set NAQ_NATS_URL "
    "or pass nats_url=...), and naq.SyncClient(nats_url=...) or naq.Queue(name, nats_url=...) "
    "hold one for many calls; for NATS itself, use nats-py (await nats.connect(url))"
)
_CONFIG = (
    "naq reads its settings from NAQ_* environment variables (NAQ_NATS_URL, "
    "NAQ_DEFAULT_QUEUE, NAQ_JOB_SERIALIZER, ...): naq.settings.load_settings() returns them"
)
_EVENTS = (
    "naq's events are naq.Event objects of kinds naq.EventKind: "
    "async for event in naq.watch_events(): ..."
)
_RESULTS = (
    "naq.fetch_job_result(job_id) (naq.fetch_job_result_sync) returns a job's value, and "
    "naq.get_job_info(job_id) (naq.get_job_info_sync) its whole record: status, result, error"
)

#: Each original name naq does not have, with what to write instead.
REPLACED: dict[str, str] = {
    "connect": (
        "naq connects on first use: set NAQ_NATS_URL or pass nats_url=... to the calls, "
        "or hold one connection with naq.SyncClient(nats_url=...) / naq.Queue(nats_url=...)"
    ),
    "close_nats_connection": (
        "await naq.close() closes the connections of naq's async helpers, "
        "naq.close_sync_connections() those of the blocking ones"
    ),
    "get_nats_connection": _RAW_NATS,
    "get_jetstream_context": _RAW_NATS,
    "nats_jetstream": _RAW_NATS,
    "nats_kv_store": _RAW_NATS,
    "NatsClient": (
        "use naq.SyncClient(nats_url=...): with naq.SyncClient(nats_url=url) as client: "
        "client.enqueue(func, ...)"
    ),
    "Config": _CONFIG,
    "get_config": _CONFIG,
    "load_config": _CONFIG,
    "Results": _RESULTS,
    "JobResult": _RESULTS,
    "JobEvent": _EVENTS,
    "WorkerEvent": _EVENTS,
    "JobEventType": _EVENTS,
    "WorkerEventType": _EVENTS,
    "WORKER_STATUS": (
        "a worker's status is a string of naq.list_workers() entries (WorkerInfo.status): "
        "'idle', 'busy' or 'stopping'"
    ),
    "SCHEDULED_JOB_STATUS": (
        "a schedule's status is a string of naq.list_schedules() entries (Schedule.status): "
        "'active' or 'paused'"
    ),
}


class ReplacedName:
    """Stands for an original naq name: calling it or reading an attribute of it raises
    :class:`~naq.errors.NaqException` saying what to write instead."""

    def __init__(self, name: str, instead: str) -> None:
        self._name = name
        self._instead = instead

    def _refuse(self) -> NoReturn:
        raise NaqException(
            f"naq.{self._name} is the original naq's and naq has no such name: {self._instead}"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    def __getattr__(self, attribute: str) -> NoReturn:
        if attribute.startswith("__"):  # introspection (copy, pickle, inspect) looks away
            raise AttributeError(attribute)
        self._refuse()

    def __repr__(self) -> str:
        return f"<original naq name naq.{self._name}: not in naq>"


#: ``retry_delay``: seconds, or one delay per retry.
RetryDelayType = float | Sequence[float]

#: Original names naq has under another name: a function giving naq's object.
RENAMED: dict[str, Callable[[], object]] = {
    "NAQError": lambda: NaqException,
    "disconnect": lambda: api.close,
    "RetryDelayType": lambda: RetryDelayType,
    "DEFAULT_NATS_URL": lambda: DEFAULT_NATS_URL,
    "DEFAULT_QUEUE_NAME": lambda: load_settings().default_queue,
}


def lookup(name: str) -> object:
    """naq's object for the original name ``name``, a :class:`ReplacedName` for one naq does
    not have; :class:`AttributeError` for any other name."""
    renamed = RENAMED.get(name)
    if renamed is not None:
        return renamed()
    instead = REPLACED.get(name)
    if instead is not None:
        return ReplacedName(name, instead)
    raise AttributeError(f"module 'naq' has no attribute {name!r}")
