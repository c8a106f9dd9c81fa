"""A job message as it goes on the wire: its headers (the message id the stream
deduplicates on, and the signature when signing is on)."""

from __future__ import annotations

import hashlib
import hmac

from .constants import HEADER_MSG_ID, HEADER_SIGNATURE
from .serialization import sign
from .settings import Settings
from .transport import encode_headers


def message_id(settings: Settings, job_id: str) -> str:
    """The ``Nats-Msg-Id`` of a job message: the job id, or with signing on, the job id
    plus a keyed tag. The stream drops a message whose id it saw in the last two minutes,
    so without the tag anyone who may publish could claim a future signed job's id with an
    unsigned message and make the stream drop the real one."""
    if not settings.signing_key:
        return job_id
    tag = hmac.new(settings.signing_key, b"msg-id:" + job_id.encode(), hashlib.sha256)
    return f"{job_id}.{tag.hexdigest()[:32]}"


def job_headers(settings: Settings, job_id: str, payload: bytes) -> dict[str, str]:
    """Headers of a job message: its id for deduplication, and its signature if configured."""
    headers = {HEADER_MSG_ID: message_id(settings, job_id)}
    if settings.signing_key:
        headers[HEADER_SIGNATURE] = sign(payload, settings.signing_key)
    return headers


def job_header_block(settings: Settings, job_id: str, payload: bytes) -> bytes:
    """:func:`job_headers` encoded for the wire (the bulk enqueue path)."""
    if settings.signing_key:
        return encode_headers(job_headers(settings, job_id, payload))
    return b"NATS/1.0\r\n" + HEADER_MSG_ID.encode() + b": " + job_id.encode() + b"\r\n\r\n"
