"""A job message as it goes on the wire: its headers (the message id the stream
deduplicates on, and the signature when signing is on)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from loguru import logger

from .constants import HEADER_MSG_ID, HEADER_SIGNATURE
from .serialization import sign
from .settings import Settings
from .transport import encode_headers, is_header_name, is_header_value

#: Header names naq sets itself: a hook's header of the same name is dropped.
_RESERVED_PREFIXES = ("nats-", "naq-")


def message_id(settings: Settings, job_id: str) -> str:
    """The ``Nats-Msg-Id`` of a job message: the job id, or with signing on, the job id
    plus a keyed tag. The stream drops a message whose id it saw in the last two minutes,
    so without the tag anyone who may publish could claim a future signed job's id with an
    unsigned message and make the stream drop the real one."""
    if not settings.signing_key:
        return job_id
    tag = hmac.new(settings.signing_key, b"msg-id:" + job_id.encode(), hashlib.sha256)
    return f"{job_id}.{tag.hexdigest()[:32]}"


def hook_headers(headers: Mapping[object, object]) -> dict[str, str]:
    """The headers hooks set on a job (``job.headers``) that a NATS message can carry: string
    names and values, no line breaks, none of NATS' or naq's own names. Any other is left
    out with a warning (a hook's mistake never fails the enqueue)."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if (
            isinstance(name, str)
            and isinstance(value, str)
            and is_header_name(name)
            and is_header_value(value)
            and not name.lower().startswith(_RESERVED_PREFIXES)
        ):
            kept[name] = value
        else:
            logger.warning(
                "job header {!r}: {!r} left out: names and values must be strings without "
                "line breaks, and names must not start with Nats- or Naq-",
                name,
                value,
            )
    return kept


def job_headers(
    settings: Settings, job_id: str, payload: bytes, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Headers of a job message: ``extra`` (checked by :func:`hook_headers`), its id for
    deduplication, and its signature if configured."""
    headers = dict(extra) if extra else {}
    headers[HEADER_MSG_ID] = message_id(settings, job_id)
    if settings.signing_key:
        headers[HEADER_SIGNATURE] = sign(payload, settings.signing_key)
    return headers


def job_header_block(
    settings: Settings, job_id: str, payload: bytes, extra: Mapping[str, str] | None = None
) -> bytes:
    """:func:`job_headers` encoded for the wire (the bulk enqueue path)."""
    if settings.signing_key or extra:
        return encode_headers(job_headers(settings, job_id, payload, extra))
    return b"NATS/1.0\r\n" + HEADER_MSG_ID.encode() + b": " + job_id.encode() + b"\r\n\r\n"
