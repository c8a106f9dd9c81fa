"""Turning nats-py's exceptions and JetStream API errors into naq's error tree.

Above the NATS boundary only naq errors exist: :class:`~naq.errors.NaqConnectionError` (and
its :class:`~naq.errors.NaqTimeoutError`, also an ``asyncio.TimeoutError``) for everything
about reaching and talking to the server, :class:`~naq.errors.ServerError` with the server's
codes when it refused a request, :class:`~naq.errors.WriteConflictError` for a failed
compare-and-set.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

import nats.errors
import nats.js.errors

from ..errors import (
    NaqConnectionError,
    NaqException,
    NaqTimeoutError,
    PayloadTooLargeError,
    ServerError,
    WriteConflictError,
)

#: JetStream error codes of a failed expected-last-sequence check (stream / KV subject).
CONFLICT_CODES = frozenset({10071, 10164})
SERVER_HINT = "start one with 'naq server' or set NAQ_NATS_URL"


class AnnotatedTimeoutError(nats.errors.TimeoutError):
    """nats-py's request timeout, carrying what the server reported shortly before (e.g. a
    permissions violation on the reply subscription): ``note`` is appended to naq's error."""

    def __init__(self, note: str) -> None:
        super().__init__()
        self.note = note


def api_error(error: dict[str, Any] | None, what: str = "request") -> ServerError:
    """The naq error for a JetStream API error object (``{"code", "err_code", ...}``)."""
    error = error or {}
    code = _int(error.get("code"))
    err_code = _int(error.get("err_code"))
    text = str(error.get("description") or "refused")[:300]
    cls = WriteConflictError if err_code in CONFLICT_CODES else ServerError
    return cls(f"NATS refused the {what}: {text}", code=code, err_code=err_code)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def no_stream(what: str) -> ServerError:
    """The error for a publish no stream listens to (status 503)."""
    return ServerError(
        f"NATS has no stream for the {what} (503 no responders); is JetStream enabled?",
        code=503,
    )


def no_jetstream(what: str) -> ServerError:
    """The error for a JetStream API request nothing answered (status 503)."""
    return ServerError(
        f"NATS did not answer the {what}: JetStream is not available (503 no responders); "
        "is JetStream enabled on the server (nats-server -js)?",
        code=503,
    )


def translate(exc: BaseException, what: str = "request") -> NaqException:
    """The naq error for an exception raised by nats-py while doing ``what``."""
    if isinstance(exc, NaqException):
        return exc
    if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError):
        return WriteConflictError(f"{what}: the key changed meanwhile", err_code=10071)
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return no_stream(what)
    if isinstance(exc, nats.js.errors.APIError):
        description = getattr(exc, "description", None)
        if isinstance(exc, nats.js.errors.ServiceUnavailableError) and not description:
            return no_jetstream(what)
        return api_error(
            {
                "code": getattr(exc, "code", None),
                "err_code": getattr(exc, "err_code", None),
                "description": description or type(exc).__name__,
            },
            what,
        )
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PayloadTooLargeError(f"{what}: the message is larger than the server's max_payload")
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        note = exc.note if isinstance(exc, AnnotatedTimeoutError) else ""
        return NaqTimeoutError(f"NATS did not answer the {what} in time{note}")
    if isinstance(exc, nats.errors.NoRespondersError):
        return ServerError(f"nothing answered the {what} (no responders)", code=503)
    if isinstance(exc, nats.errors.AuthorizationError):
        return NaqConnectionError(f"NATS refused the login (authorization violation) ({what})")
    if isinstance(exc, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError):
        return NaqConnectionError(f"the NATS connection is closed ({what})")
    if isinstance(exc, nats.errors.OutboundBufferLimitError):
        return NaqConnectionError(f"reconnecting to NATS and the outgoing buffer is full ({what})")
    if isinstance(exc, nats.errors.Error | OSError | ssl.SSLError | EOFError):
        return NaqConnectionError(f"NATS error during the {what}: {_text(exc)}")
    raise exc


def _text(exc: BaseException) -> str:
    """``str(exc)``, or its class name when that is empty or fails (some nats-py errors
    format attributes that are not always set)."""
    try:
        return str(exc) or type(exc).__name__
    except Exception:  # noqa: BLE001 - the error line must not raise
        return type(exc).__name__


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise nats-py errors raised inside the block as naq errors."""
    try:
        yield
    except NaqException:
        raise
    except (nats.errors.Error, OSError, TimeoutError, EOFError) as exc:
        raise translate(exc, what) from exc


def is_conflict(exc: BaseException | None) -> bool:
    """True for a compare-and-set revision mismatch (raw or translated)."""
    if isinstance(exc, WriteConflictError | nats.js.errors.KeyWrongLastSequenceError):
        return True
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code in CONFLICT_CODES
