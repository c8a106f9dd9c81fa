"""Every name that reaches a NATS protocol line is checked here: subjects, subject tokens
(queue names, job ids, keys), header names and values, and message sizes.

A NATS protocol line is ``PUB <subject> <reply> <size>``: a space, CR or LF inside a name
ends the line early and lets the rest be read as commands of their own. nats-py's ``publish``
refuses such names; naq's synchronous fast path (:mod:`naq.transport.wire`) refuses the same,
and naq refuses more: every token it builds a subject from is a plain name. Checking is cheap
(one precompiled regular expression), so it runs on every message, on the hot path too.
"""

from __future__ import annotations

import re

from ..errors import ConfigurationError, PayloadTooLargeError
from ..names import is_job_id

#: A subject as nats-py's publish accepts it: non-empty, no whitespace or CR/LF. Stricter
#: than nats-py: printable ASCII only (a non-ASCII subject is legal NATS, but no naq name is).
_SUBJECT = re.compile(r"[!-~]+")
#: Header names: RFC 7230 token characters (what nats-py's header encoding accepts).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
#: Header values: no CR/LF or other control characters but tabs (nats-py replaces CR/LF;
#: naq refuses). UTF-8 text is allowed, as nats-py allows it.
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
#: Longest header value naq sends (a dead letter's reason is cut to this before sending).
MAX_HEADER_VALUE = 4096


def is_subject(subject: object) -> bool:
    """True when ``subject`` may go into a protocol line as a subject or reply subject."""
    return isinstance(subject, str) and _SUBJECT.fullmatch(subject) is not None


def check_subject(subject: object, what: str = "subject") -> str:
    """``subject`` if it is safe on a protocol line, else :class:`ConfigurationError`."""
    if not is_subject(subject):
        raise ConfigurationError(f"invalid NATS {what} {_shown(subject)}")
    assert isinstance(subject, str)
    return subject


def is_token(name: object) -> bool:
    """True for a plain name naq builds subjects, keys and ids from: a valid job id
    (:func:`naq.names.is_job_id`: 1-128 ASCII letters, digits, ``_`` or ``-``; no dots,
    wildcards, spaces, CR/LF or other characters)."""
    return is_job_id(name)


def is_header_name(name: object) -> bool:
    """True for a header name nats-py would send (RFC 7230 token characters)."""
    return isinstance(name, str) and _HEADER_NAME.fullmatch(name) is not None


def is_header_value(value: object) -> bool:
    """True for a header value that cannot end its line (no control characters but tabs)."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_HEADER_VALUE
        and _HEADER_VALUE.fullmatch(value) is not None
    )


def safe_header_value(value: str) -> str:
    """``value`` made safe for a header: one line, control characters replaced by ``?``,
    cut to :data:`MAX_HEADER_VALUE` characters. For text naq writes itself (reasons)."""
    text = " ".join(value.split())
    if not _HEADER_VALUE.fullmatch(text):
        text = "".join("?" if ch < " " or ch == "\x7f" else ch for ch in text)
    return text[:MAX_HEADER_VALUE]


def check_size(size: int, max_payload: int, what: str) -> None:
    """Refuse a message of ``size`` bytes (payload plus headers) the server would refuse by
    closing the connection: :class:`PayloadTooLargeError`, nothing is sent."""
    if size > max_payload:
        raise PayloadTooLargeError(
            f"{what} is {size:,} bytes, more than the server's max_payload of "
            f"{max_payload:,} bytes; nothing was sent"
        )


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
