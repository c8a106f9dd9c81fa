"""Turning a call into a job message and back: JSON by default (function by import path,
arguments through the faithful codec), pickle only when the user opted in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from loguru import logger

from .codec import from_wire, to_wire
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


def sign(payload: bytes, key: bytes) -> str:
    """HMAC-SHA256 signature of a job payload (hex)."""
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def signature_valid(payload: bytes, signature: str | None, key: bytes) -> bool:
    """True when ``signature`` is the valid signature of ``payload`` (any other text, a
    non-ASCII one included, is simply not valid)."""
    if not isinstance(signature, str) or not signature.isascii():
        return False
    return hmac.compare_digest(sign(payload, key), signature)
