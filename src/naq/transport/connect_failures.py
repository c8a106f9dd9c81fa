"""Why connecting to NATS failed, in one line naming the cause and what to do, and whether
trying again could help (a refused login, credentials or certificate cannot: those end the
connect at the first attempt and are :class:`~naq.errors.LoginRefusedError`)."""

from __future__ import annotations

import ssl

import nats.errors

from ..errors import LoginRefusedError, NaqConnectionError, NaqTimeoutError
from .errors import SERVER_HINT


def describe_failure(url: str, error: BaseException | None) -> str:
    """One line saying why connecting to ``url`` failed, and what to do about it."""
    text = _text(error)
    lowered = text.lower()
    if isinstance(error, TlsRequiredError | ClientCertificateError):
        return str(error)
    if isinstance(error, nats.errors.AuthorizationError) or "authorization" in lowered:
        return (
            f"NATS at {url} refused the login (authorization violation); "
            "check the user, password, token or creds"
        )
    if isinstance(error, nats.errors.InvalidUserCredentialsError):
        return f"the credentials in NAQ_NATS_CREDS are not valid ({text}); NATS at {url}"
    if type(error).__module__.startswith("nkeys"):
        return (
            "the nkey seed (NAQ_NATS_CREDS or NAQ_NATS_NKEY) cannot be used: "
            f"{text or type(error).__name__}"
        )
    if "authentication" in lowered or "expired" in lowered or "nkey" in lowered:
        return f"NATS at {url} refused the credentials: {text}"
    if "permissions violation" in lowered:
        return f"NATS at {url} refused an operation naq needs to connect: {text}"
    refused_certificate = _client_certificate_alert(error)
    if refused_certificate == "missing":
        return client_certificate_missing(url)
    if refused_certificate == "refused":
        return client_certificate_refused(url)
    if isinstance(error, ssl.SSLCertVerificationError):
        return (
            f"TLS with NATS at {url} failed: the server's certificate did not pass "
            f"verification ({error.verify_message or text}); set NAQ_NATS_TLS_CA to the CA "
            "that signed it"
        )
    if isinstance(error, ssl.SSLError) or "tls" in lowered or "ssl" in lowered:
        return f"TLS with NATS at {url} failed: {text or type(error).__name__}"
    if isinstance(error, nats.errors.Error) and lowered.startswith("nats: "):
        return f"NATS at {url} refused the connection: {text[6:]}"
    if error is None or isinstance(error, OSError | TimeoutError | EOFError | nats.errors.Error):
        return f"cannot reach NATS at {url}; {SERVER_HINT}"
    return f"cannot connect to NATS at {url}: {type(error).__name__}: {text}"


def connect_failure(url: str, error: BaseException | None) -> NaqConnectionError:
    """The error of a failed connect to ``url``: :class:`LoginRefusedError` when the server
    refused this client (trying again cannot help), :class:`NaqTimeoutError` for a timeout,
    else :class:`NaqConnectionError`; its message from :func:`describe_failure`."""
    text = describe_failure(url, error)
    if error is not None and is_final(error):
        return LoginRefusedError(text)
    if isinstance(error, TimeoutError):
        return NaqTimeoutError(text)
    return NaqConnectionError(text)


def _client_certificate_alert(error: BaseException | None) -> str | None:
    """``"missing"`` or ``"refused"`` when ``error`` is the server's TLS alert about the
    client certificate (it asked for one and got none, or did not accept it), else ``None``."""
    if not isinstance(error, ssl.SSLError):
        return None
    reason = str(error.reason or "").upper()
    if "ALERT" not in reason:
        return None
    if "CERTIFICATE_REQUIRED" in reason:
        return "missing"
    if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
        return "refused"
    return None


def _text(error: BaseException | None) -> str:
    try:
        return str(error or "").strip().strip("'\"")
    except Exception:  # noqa: BLE001 - an exception whose str() fails still gets a line
        return type(error).__name__


def tls_not_required(url: str) -> str:
    """The error line for a server that does not require TLS although TLS was asked for."""
    return (
        f"NATS at {url} does not require TLS although TLS was asked for "
        "(tls:// URL or NAQ_NATS_TLS_*); refusing to send credentials in clear text"
    )


class TlsRequiredError(nats.errors.Error):
    """The server did not require TLS although naq was told to use it."""


class ClientCertificateError(nats.errors.Error):
    """The server verifies client certificates and naq has none, or the server refused it."""


def client_certificate_missing(url: str) -> str:
    """The error line for a server that requires a client certificate naq was not given."""
    return (
        f"NATS at {url} requires a TLS client certificate (tls verify) and none is set; "
        "set NAQ_NATS_TLS_CERT and NAQ_NATS_TLS_KEY"
    )


def client_certificate_refused(url: str) -> str:
    """The error line for a server that closed the connection during the TLS handshake
    although it got a client certificate: it did not accept it."""
    return (
        f"NATS at {url} refused the TLS client certificate in NAQ_NATS_TLS_CERT "
        "(certificate verification failed on the server: is it signed by a CA the "
        "server trusts, and not expired?)"
    )


def is_final(error: BaseException) -> bool:
    """True for a connect error that trying again cannot mend (a refused login, a failed
    TLS handshake, TLS refused): the first attempt is the last."""
    if isinstance(
        error,
        nats.errors.AuthorizationError
        | nats.errors.InvalidUserCredentialsError
        | TlsRequiredError
        | ClientCertificateError
        | ssl.SSLError,
    ):
        return True
    if type(error).__module__.startswith("nkeys"):
        return True
    lowered = _text(error).lower()
    return "authorization violation" in lowered or "authentication" in lowered
