"""The rules for every user-chosen name naq builds a NATS subject or key-value key from.

A queue name, job id, schedule id, worker name or scheduler id each becomes exactly ONE
token of a subject: ``naq.queue.<queue>``, ``naq.sched.<queue>.<job id>``,
``$KV.naq_results.<job id>``, ``$KV.naq_schedules.<schedule id>``, consumer ``naq-<queue>``.
A ``.`` would add a token (``a.b`` reaching queue ``a``'s subjects), ``*`` and ``>`` are
wildcards (one name matching every queue's or job's), whitespace, CR/LF and other control
characters end a protocol line early, and non-ASCII or very long names make subjects other
clients and tools spell differently or refuse. So each of these names is 1 to a kind's
maximum of ASCII letters, digits, ``_`` and ``-``, and nothing else.

Every check runs at the call that received the name, before anything is sent: a bad name
raises one :class:`~naq.errors.ConfigurationError` line naming the parameter, the
offending value (escaped and cut short, see :func:`shown`) and the rule. Looking up a job by
an id no job can have raises :class:`~naq.errors.JobNotFoundError` instead, as an unknown
id does (:func:`lookup_job_id`).

The longest subject built from these names (``naq.sched.<queue>.<job id>``, 239 bytes) is
far below the server's 4,096-byte protocol line (``max_control_line``), and the longest
durable consumer name (``naqp9-<queue>``, 106) well below the 255 bytes of a file name
(JetStream's file storage names directories after consumers).
"""

from __future__ import annotations

import re

from .errors import ConfigurationError, JobNotFoundError

#: What a name may be made of.
NAME_ALPHABET = "ASCII letters, digits, '_' and '-'"
#: Longest queue name: it appears in consumer names and in two-name subjects.
MAX_QUEUE_NAME = 100
#: Longest job id (also the longest id a schedule lookup accepts: it takes job ids too).
MAX_JOB_ID = 128
#: Longest schedule id a new schedule may be given: its runs' job ids are
#: ``<schedule_id>-<UTC run time>`` and must stay job ids.
MAX_SCHEDULE_ID = 100
#: A worker's id is ``<worker_name>-<8 hex>`` and must be a job-id-sized token (so is a
#: scheduler's ``<scheduler_id>-<8 hex>``).
MAX_WORKER_NAME = MAX_JOB_ID - 9
#: Longest value :func:`shown` puts into an error message.
SHOWN_LENGTH = 60

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def _rule(longest: int) -> re.Pattern[str]:
    return re.compile(rf"[A-Za-z0-9_-]{{1,{longest}}}")


_QUEUE_NAME = _rule(MAX_QUEUE_NAME)
_JOB_ID = _rule(MAX_JOB_ID)
_SCHEDULE_ID = _rule(MAX_SCHEDULE_ID)
_WORKER_NAME = _rule(MAX_WORKER_NAME)


def shown(value: object) -> str:
    """``value`` as an error message may show it: its ASCII-only ``repr`` (control and
    non-ASCII characters escaped, so one line), cut to :data:`SHOWN_LENGTH` characters."""
    text = ascii(value)
    return text if len(text) <= SHOWN_LENGTH else text[: SHOWN_LENGTH - 3] + "..."


def name_problem(value: object, longest: int) -> str | None:
    """Why ``value`` cannot be a name of at most ``longest`` characters, or ``None``."""
    if not isinstance(value, str):
        return f"it is of type {type(value).__name__}, not a string"
    if not value:
        return "it is empty"
    if len(value) > longest:
        return f"it is {len(value):,} characters long, more than {longest}"
    bad = _NOT_ALLOWED.search(value)
    if bad is None:
        return None
    return f"{_describe(bad.group())} at position {bad.start()} is not allowed"


def _describe(char: str) -> str:
    if char == ".":
        return "'.' (it separates subject tokens)"
    if char in "*>":
        return f"wildcard {char!r}"
    if char.isspace():
        return f"whitespace {char!a}"
    if not char.isascii():
        return f"non-ASCII character {char!a}"
    if not char.isprintable():
        return f"control character {char!a}"
    return f"character {char!r}"


def _check(value: object, rule: re.Pattern[str], what: str, longest: int) -> str:
    if isinstance(value, str) and rule.fullmatch(value):
        return value
    raise ConfigurationError(
        f"invalid {what} {shown(value)}: {name_problem(value, longest)}; "
        f"use 1-{longest} {NAME_ALPHABET}"
    )


def check_queue_name(name: object, what: str = "queue name") -> str:
    """``name`` if it is a valid queue name (1-100 :data:`NAME_ALPHABET`), else
    :class:`ConfigurationError` naming ``what`` and the rule."""
    return _check(name, _QUEUE_NAME, what, MAX_QUEUE_NAME)


def check_job_id(job_id: object, what: str = "job_id") -> str:
    """``job_id`` if it is a valid job id (1-128 :data:`NAME_ALPHABET`), else
    :class:`ConfigurationError` naming ``what`` and the rule."""
    return _check(job_id, _JOB_ID, what, MAX_JOB_ID)


def check_schedule_id(schedule_id: object, what: str = "schedule_id") -> str:
    """``schedule_id`` if a new schedule may have it (1-100 :data:`NAME_ALPHABET`), else
    :class:`ConfigurationError` naming ``what`` and the rule."""
    return _check(schedule_id, _SCHEDULE_ID, what, MAX_SCHEDULE_ID)


def check_worker_name(name: object, what: str = "worker_name") -> str:
    """``name`` if it may start a worker's or scheduler's id (1-119
    :data:`NAME_ALPHABET`), else :class:`ConfigurationError` naming ``what`` and the rule."""
    return _check(name, _WORKER_NAME, what, MAX_WORKER_NAME)


def is_queue_name(name: object) -> bool:
    """True for a valid queue name (no error built: for hot paths and filters)."""
    return isinstance(name, str) and _QUEUE_NAME.fullmatch(name) is not None


def is_job_id(job_id: object) -> bool:
    """True for a valid job id (no error built: for hot paths and filters)."""
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def lookup_job_id(job_id: object, what: str = "job", id_kind: str = "job id") -> str:
    """``job_id`` if some job could have it, else :class:`JobNotFoundError` (a lookup of an
    id no job can have finds nothing, as an unknown id does): "``what`` <id> not found (not a
    valid ``id_kind``: why)". Schedule lookups use it too: a schedule id is a job id."""
    if is_job_id(job_id):
        assert isinstance(job_id, str)
        return job_id
    raise JobNotFoundError(
        f"{what} {shown(job_id)} not found (not a valid {id_kind}: "
        f"{name_problem(job_id, MAX_JOB_ID)}; use 1-{MAX_JOB_ID} {NAME_ALPHABET})"
    )
