"""Turning a call into a job message and back: JSON by default (function by import path,
arguments through the faithful codec), pickle only when the user opted in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from loguru import logger

from .codec import from_wire, to_wire
from .constants import HEADER_SIGNATURE
from .errors import ConfigurationError, SerializationError
from .functions import function_path
from .job import JobOptions
from .models import JobEnvelope
from .settings import Settings

PICKLE_WARNING = (
    "NAQ_JOB_SERIALIZER=pickle: job arguments are pickled. Anyone who can publish to the "
    "job subjects can run arbitrary code on your workers. Use only on a trusted, "
    "authenticated NATS server."
)

_warned: set[str] = set()


def warn_if_pickle(settings: Settings, role: str) -> None:
    """Log the loud pickle warning once per role (producer, worker) and process."""
    if settings.serializer == "pickle" and role not in _warned:
        _warned.add(role)
        logger.warning("{} ({} start-up)", PICKLE_WARNING, role)


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:
        raise ConfigurationError(
            "NAQ_JOB_SERIALIZER=pickle needs cloudpickle: pip install 'naq[pickle]'"
        ) from None
    return cloudpickle


def build_envelope(
    func: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    job_id: str,
    queue: str,
    options: JobOptions,
    settings: Settings,
    schedule_id: str | None = None,
) -> JobEnvelope:
    """The envelope for one call; raises SerializationError before anything is sent."""
    path = function_path(func)
    envelope = JobEnvelope(
        id=job_id,
        fn=path,
        queue=queue,
        max_retries=options.max_retries,
        retry_delay=(
            list(options.retry_delay)
            if isinstance(options.retry_delay, tuple)
            else options.retry_delay
        ),
        retry_strategy=options.retry_strategy,
        retry_on=list(options.retry_on),
        ignore_on=list(options.ignore_on),
        timeout=options.timeout,
        result_ttl=options.result_ttl,
        depends_on=list(options.depends_on),
        allow_failure=options.allow_failure,
        priority=options.priority,
        limits=list(options.limits),
        expires_at=options.expires_at,
        enqueued_at=time.time(),
        schedule_id=schedule_id,
    )
    if settings.serializer == "pickle":
        try:
            blob = _cloudpickle().dumps((args, kwargs))
        except Exception as exc:
            raise SerializationError(f"arguments of {path} cannot be pickled: {exc}") from exc
        envelope.pickled = base64.b64encode(blob).decode()
    else:
        envelope.args = [to_wire(a, path=f"args[{i}]") for i, a in enumerate(args)]
        envelope.kwargs = {k: to_wire(v, path=f"kwargs[{k!r}]") for k, v in kwargs.items()}
    return envelope


def decode_call(envelope: JobEnvelope, settings: Settings) -> tuple[list[Any], dict[str, Any]]:
    """Arguments of a received envelope; refuses pickle unless this process opted in."""
    if envelope.pickled is not None:
        if settings.serializer != "pickle":
            raise SerializationError(
                "job arguments are pickled but this worker does not accept pickle "
                "(set NAQ_JOB_SERIALIZER=pickle on trusted deployments only)"
            )
        args, kwargs = _cloudpickle().loads(base64.b64decode(envelope.pickled))
        return list(args), dict(kwargs)
    return [from_wire(a) for a in envelope.args], {
        k: from_wire(v) for k, v in envelope.kwargs.items()
    }


#: Header names naq and NATS set themselves (case-insensitive prefixes): every other header
#: of a job message is one of its hooks' headers, and is signed.
RESERVED_HEADER_PREFIXES = ("nats-", "naq-")
#: The first part of what a job signature covers: changing the format changes this.
SIGNATURE_FORMAT = b"naq-job-signature-v2"


def sign(payload: bytes, key: bytes) -> str:
    """HMAC-SHA256 of ``payload`` (hex): the primitive under :func:`sign_job`."""
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def signed_headers(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """The headers a job signature covers: every header but NATS' and naq's own, sorted,
    values without surrounding whitespace (as NATS delivers them)."""
    if not headers:
        return []
    return sorted(
        (name, value.strip())
        for name, value in headers.items()
        if not name.lower().startswith(RESERVED_HEADER_PREFIXES)
    )


def signed_content(
    subject: str, job_id: str, headers: Mapping[str, str] | None, payload: bytes
) -> bytes:
    """The bytes a job signature covers: the format version, the subject the message is
    published on (queue and priority), the job id, its hook headers and the payload (the
    function, arguments and options), each length-prefixed so no two differ only in
    where one part ends and the next begins."""
    kept = signed_headers(headers)
    parts = [SIGNATURE_FORMAT, subject.encode(), job_id.encode(), str(len(kept)).encode()]
    for name, value in kept:
        parts += [name.encode(), value.encode()]
    parts.append(payload)
    return b"".join(b"%d:%s" % (len(part), part) for part in parts)


def sign_job(
    key: bytes, subject: str, job_id: str, headers: Mapping[str, str] | None, payload: bytes
) -> str:
    """The ``Naq-Signature`` of a job message published on ``subject`` (hex HMAC-SHA256 of
    :func:`signed_content`)."""
    return sign(signed_content(subject, job_id, headers, payload), key)


def job_signature_valid(
    keys: tuple[bytes, ...],
    subject: str,
    job_id: str,
    headers: Mapping[str, str] | None,
    payload: bytes,
) -> bool:
    """True when the message's ``Naq-Signature`` header is the signature of its content
    under one of ``keys`` (during a key rotation workers hold the new and the old key). Any
    other text, a non-ASCII one included, is simply not valid."""
    signature = (headers or {}).get(HEADER_SIGNATURE)
    if not isinstance(signature, str) or not signature.isascii():
        return False
    content = signed_content(subject, job_id, headers, payload)
    return any(hmac.compare_digest(sign(content, key), signature) for key in keys)
