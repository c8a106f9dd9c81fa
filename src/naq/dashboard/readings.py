"""Turning what naq stores into the dashboard's shapes (:mod:`.models`): dead letters, a
queue's recent jobs from its events, a job's call from its message, limit use from the
limit-state bucket. Pure functions: the reads themselves are :class:`~.backend.Backend`'s."""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from ..deadletter import DeadLetter
from ..events import Event
from ..limits import LimitSpec
from ..models import decode_envelope
from ..transport.kv import KvEntry
from .models import DeadLetterSummary, DeadLetterView, LimitKeyUsage, LimitView, RecentJob

#: Key prefixes in the limit-state bucket (see :mod:`naq.limiting`): a concurrency slot
#: ``slot.<key>.<n>``, a rate cell ``rate.<key>`` (the time its next start is free).
_SLOT, _RATE = "slot.", "rate."
#: How a ``:`` of a limit key is written in a key-value key (see :func:`naq.limits.key_token`).
_KEY_COLON = "="


def dead_letter_summary(entry: DeadLetter) -> DeadLetterSummary:
    """``entry`` without its payload."""
    return DeadLetterSummary(
        id=entry.id,
        reason=entry.reason,
        kind=entry.kind,
        queue=entry.queue,
        job_id=entry.job_id,
        failed_at=entry.failed_at,
    )


def dead_letter_view(entry: DeadLetter) -> DeadLetterView:
    """``entry`` in full (its payload as text when UTF-8, else base64)."""
    return DeadLetterView.model_validate(entry.to_json())


def recent_jobs(events: Iterable[Event], limit: int) -> list[RecentJob]:
    """The jobs ``events`` tell of (read oldest first), each with its latest event, the
    most recent first, at most ``limit``."""
    latest: dict[str, RecentJob] = {}
    for event in events:
        if event.job_id is None:
            continue  # a worker's event
        before = latest.pop(event.job_id, None)
        latest[event.job_id] = RecentJob(
            job_id=event.job_id,
            kind=event.kind,
            at=event.at,
            function=event.function or (before.function if before else None),
            error=event.error,
        )
    return list(reversed(latest.values()))[:limit]


def job_call(payload: bytes) -> tuple[list[object] | None, dict[str, object] | None, str | None]:
    """``(args, kwargs, note)`` of a job message: its arguments in naq's wire form (JSON),
    or ``None`` and a note saying why they cannot be shown."""
    try:
        envelope = decode_envelope(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None, "the job's message cannot be read"
    if envelope.pickled is not None:
        return None, None, "the arguments are pickled (not shown)"
    return list(envelope.args), dict(envelope.kwargs), None


def _limit_key(token: str) -> str:
    return token.replace(_KEY_COLON, ":")


def limit_views(specs: list[LimitSpec], state: list[KvEntry], now: float) -> list[LimitView]:
    """Each definition with the use now of the concrete limits it covers: a concrete one
    its own key, a family (``user:*``) every key starting with its prefix."""
    running: dict[str, int] = {}
    free_at: dict[str, float] = {}
    for entry in state:
        if entry.key.startswith(_SLOT):
            token = entry.key[len(_SLOT) :].rpartition(".")[0]
            key = _limit_key(token)
            running[key] = running.get(key, 0) + 1
        elif entry.key.startswith(_RATE):
            try:
                free_at[_limit_key(entry.key[len(_RATE) :])] = float(entry.value)
            except ValueError:
                continue
    views: list[LimitView] = []
    for spec in specs:
        prefix = spec.family_prefix
        keys = sorted(
            key
            for key in running.keys() | free_at.keys()
            if (key.startswith(prefix) if prefix is not None else key == spec.name)
        )
        usage = [
            LimitKeyUsage(
                key=key,
                running=running.get(key, 0),
                rate_used=_rate_used(spec, free_at.get(key), now),
            )
            for key in keys
        ]
        views.append(
            LimitView(
                name=spec.name,
                concurrency=spec.concurrency,
                rate=None if spec.rate is None else str(spec.rate),
                usage=usage,
            )
        )
    return views


def _rate_used(spec: LimitSpec, free_at: float | None, now: float) -> int:
    """Starts counted against ``spec``'s rate now: the rate cell's time ahead of now, in
    starts (each start moves it one interval on)."""
    if spec.rate is None or free_at is None or free_at <= now:
        return 0
    interval = spec.rate.per / spec.rate.count
    return min(spec.rate.count, math.ceil((free_at - now) / interval - 1e-9))
