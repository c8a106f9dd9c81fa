"""The first step for every job message: decide whether it may run, without side effects.

Decoding, validating every field that later reaches a subject, a header, a timer or a TTL,
checking the signature, resolving the function through the allow-list and decoding the
arguments are pure and synchronous. Whatever the message's bytes, the answer is either
:class:`Go` or :class:`Refuse` (kept in the dead-letter stream with its reason), never an
exception: one bad message costs one dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..functions import FunctionNotAllowedError, FunctionNotFoundError, FunctionResolver
from ..job import (
    LIMIT_NAME_RE,
    MAX_JOB_LIMITS,
    MAX_PRIORITY,
    MAX_SECONDS,
    MIN_PRIORITY,
    RETRY_STRATEGIES,
)
from ..models import JobEnvelope, decode_envelope
from ..serialization import decode_call, job_signature_valid
from ..settings import Settings
from ..transport import Message, is_token

#: Limits on fields of a received envelope (an honest producer stays far below them).
MAX_FUNCTION_PATH = 1000
MAX_LIST_ITEMS = 1000


@dataclass(slots=True)
class Go:
    """The message may run: its envelope, function and decoded arguments."""

    envelope: JobEnvelope
    func: Any
    args: list[Any]
    kwargs: dict[str, Any]
    dependency_results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refuse:
    """The message must not run. ``envelope`` is set when it was decoded, valid and
    trustworthy (signed if signing is on): only then may its job's record be written."""

    kind: str
    reason: str
    envelope: JobEnvelope | None = None


def decide(msg: Message, queue: str, settings: Settings, resolver: FunctionResolver) -> Go | Refuse:
    """Decide about one message received on ``queue`` (never raises)."""
    envelope = decode(msg, queue, settings)
    if isinstance(envelope, Refuse):
        return envelope
    return resolve(envelope, settings, resolver)


def decode(msg: Message, queue: str, settings: Settings) -> JobEnvelope | Refuse:
    """The message's envelope if it is well-formed, valid and (with signing on) signed."""
    try:
        envelope = decode_envelope(msg.data)
    except Exception as exc:  # noqa: BLE001 - msgspec errors, RecursionError, anything
        return Refuse("undecodable", f"cannot decode job: {type(exc).__name__}: {exc}")
    problem = invalid_field(envelope, queue)
    if problem is not None:
        return Refuse("invalid", f"invalid job: {problem}")
    keys = settings.signing_keys
    if keys and not job_signature_valid(keys, msg.subject, envelope.id, msg.headers, msg.data):
        # not trusted: its job id must not touch the record of a signed job. The signature
        # covers the subject too: a signed job copied to another queue or priority lands here.
        return Refuse(
            "bad_signature",
            "missing or invalid signature (NAQ_SIGNING_KEY) for its subject, job id, headers "
            f"and payload; it claims to be job {envelope.id}",
        )
    return envelope


def resolve(envelope: JobEnvelope, settings: Settings, resolver: FunctionResolver) -> Go | Refuse:
    """Function and arguments of a valid envelope, or why the job cannot run."""
    try:
        func = resolver.resolve(envelope.fn)
    except FunctionNotAllowedError as exc:
        return Refuse("refused", str(exc), envelope)
    except FunctionNotFoundError as exc:
        return Refuse("function_not_found", str(exc), envelope)
    except Exception as exc:  # noqa: BLE001 - an import that blows up in any way
        return Refuse("function_not_found", f"cannot load {envelope.fn!r}: {exc}", envelope)
    try:
        args, kwargs = decode_call(envelope, settings)
    except Exception as exc:  # noqa: BLE001 - any decode failure is a dead letter
        return Refuse("undecodable", f"cannot decode arguments: {exc}", envelope)
    return Go(envelope, func, args, kwargs)


def invalid_field(envelope: JobEnvelope, queue: str) -> str | None:
    """What is wrong with a decoded envelope received on ``queue``, or ``None``.

    Every name must be safe in a subject or key (ids are plain tokens, checked with a full
    match), and every number must be one the server and the event loop can use. Runs for
    every job: the common case (no lists, plain numbers) costs a few comparisons. A
    comparison like ``0 <= x <= MAX`` is false for NaN, so it also refuses NaN and inf."""
    if envelope.queue != queue:
        return f"it names queue {envelope.queue[:80]!r} but arrived on queue {queue!r}"
    if not is_token(envelope.id):
        return f"job id {envelope.id[:80]!r} is not 1-128 letters, digits, '_' or '-'"
    delay = envelope.retry_delay
    if isinstance(delay, list):
        if not 0 < len(delay) <= MAX_LIST_ITEMS or not all(0 <= d <= MAX_SECONDS for d in delay):
            return "retry_delay must be 1-1000 numbers of seconds between 0 and a year"
    elif not 0 <= delay <= MAX_SECONDS:
        return f"retry_delay {delay!r} is not between 0 and a year"
    timeout = envelope.timeout
    if timeout is not None and not 0 < timeout <= MAX_SECONDS:
        return f"timeout {timeout!r} is out of range"
    ttl = envelope.result_ttl
    if ttl is not None and not 1 <= ttl <= 100 * MAX_SECONDS:
        return f"result_ttl {ttl!r} is out of range"
    if not 0 <= envelope.max_retries < 2**63:
        return f"max_retries {envelope.max_retries} is out of range"
    if envelope.retry_strategy not in RETRY_STRATEGIES:
        return f"retry_strategy {envelope.retry_strategy[:40]!r} is unknown"
    if len(envelope.fn) > MAX_FUNCTION_PATH:
        return "its function path is too long"
    if not 0 <= envelope.enqueued_at < 1e11:
        return "enqueued_at is not a time"
    if envelope.schedule_id is not None and not is_token(envelope.schedule_id):
        return f"schedule id {envelope.schedule_id[:80]!r} is invalid"
    if not MIN_PRIORITY <= envelope.priority <= MAX_PRIORITY:
        return f"priority {envelope.priority} is not 0 to 9"
    if envelope.expires_at is not None and not 0 <= envelope.expires_at < 1e11:
        return "expires_at is not a time"
    if envelope.limits and (
        len(envelope.limits) > MAX_JOB_LIMITS
        or not all(LIMIT_NAME_RE.fullmatch(name) for name in envelope.limits)
    ):
        return "limits holds an invalid limit name"
    if envelope.retry_on or envelope.ignore_on or envelope.depends_on:
        lists = (envelope.retry_on, envelope.ignore_on, envelope.depends_on)
        if any(len(items) > MAX_LIST_ITEMS for items in lists):
            return "too many retry_on/ignore_on/depends_on entries"
        if not all(is_token(job_id) for job_id in envelope.depends_on):
            return "depends_on holds an invalid job id"
    return None
