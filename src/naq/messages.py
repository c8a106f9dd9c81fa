"""A job message as it goes on the wire: its headers (the message id the stream
deduplicates on, and the signature when signing is on)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from loguru import logger

from .constants import HEADER_MSG_ID, HEADER_SIGNATURE
from .serialization import RESERVED_HEADER_PREFIXES, sign_job
from .settings import Settings
from .transport import encode_headers, is_header_name, is_header_value


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
            and not name.lower().startswith(RESERVED_HEADER_PREFIXES)
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
    settings: Settings,
    job_id: str,
    payload: bytes,
    extra: Mapping[str, str] | None = None,
    *,
    subject: str,
) -> dict[str, str]:
    """Headers of a job message: ``extra`` (checked by :func:`hook_headers`), its id for
    deduplication, and with signing on its signature, which binds the ``subject`` the worker
    receives it on (its queue and priority), the job id, ``extra`` and the payload."""
    headers = dict(extra) if extra else {}
    headers[HEADER_MSG_ID] = message_id(settings, job_id)
    if settings.signing_key:
        headers[HEADER_SIGNATURE] = sign_job(settings.signing_key, subject, job_id, extra, payload)
    return headers


def job_header_block(
    settings: Settings,
    job_id: str,
    payload: bytes,
    extra: Mapping[str, str] | None = None,
    *,
    subject: str,
) -> bytes:
    """:func:`job_headers` encoded for the wire (the bulk enqueue path)."""
    if settings.signing_key or extra:
        return encode_headers(job_headers(settings, job_id, payload, extra, subject=subject))
    return b"NATS/1.0\r\n" + HEADER_MSG_ID.encode() + b": " + job_id.encode() + b"\r\n\r\n"
