"""Checking the TLS and credentials settings before connecting: a file that is missing,
unreadable or not what it should be is one clear :class:`ConfigurationError` naming its
variable (nats-py would fail later with a traceback, or hang)."""

from __future__ import annotations

import importlib
import os
import ssl
from typing import Any

from ..errors import ConfigurationError
from ..settings import Settings

#: A credentials file is a JWT and a seed; anything much larger is not one.
_CREDS_LIMIT = 64 * 1024


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the configured CA / client certificate, or ``None``.

    A file that is missing or unreadable is a :class:`ConfigurationError` naming its
    variable, never a traceback."""
    if not (settings.tls_ca or settings.tls_cert or settings.tls_key):
        return None
    if settings.tls_cert and not settings.tls_key:
        raise ConfigurationError("NAQ_NATS_TLS_CERT is set but NAQ_NATS_TLS_KEY is not")
    if settings.tls_key and not settings.tls_cert:
        raise ConfigurationError("NAQ_NATS_TLS_KEY is set but NAQ_NATS_TLS_CERT is not")
    for name, path in (
        ("NAQ_NATS_TLS_CA", settings.tls_ca),
        ("NAQ_NATS_TLS_CERT", settings.tls_cert),
        ("NAQ_NATS_TLS_KEY", settings.tls_key),
    ):
        if path and not os.path.isfile(path):
            raise ConfigurationError(f"{name}={path!r}: no such file")
    try:
        ctx = ssl.create_default_context(cafile=settings.tls_ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"NAQ_NATS_TLS_CA={settings.tls_ca!r} is not a usable CA file: {exc}"
        ) from None
    if settings.tls_cert:
        try:
            ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"NAQ_NATS_TLS_CERT/NAQ_NATS_TLS_KEY cannot be loaded: {exc}"
            ) from None
    return ctx


def wants_tls(settings: Settings) -> bool:
    """True when the settings ask for TLS (a ``tls://`` URL or TLS files): then TLS or no
    connection, never a clear-text login."""
    return bool(
        settings.tls_ca
        or settings.tls_cert
        or any(url.lower().startswith("tls://") for url in settings.nats_urls)
    )


def check_credentials(settings: Settings) -> None:
    """Refuse a credentials or nkey file that cannot be used, with one line naming the
    variable: missing, unreadable, not a NATS credentials file (user JWT and nkey seed) or
    not a user nkey seed, or the ``nkeys`` package missing. nats-py itself would fail on
    such a file with a traceback, or hang reading it. No line ever shows a seed."""
    if settings.creds_file and settings.nkey_file:
        raise ConfigurationError(
            "NAQ_NATS_CREDS and NAQ_NATS_NKEY are both set; use one (a creds file holds "
            "its own nkey seed)"
        )
    if settings.creds_file:
        path = settings.creds_file
        data, nkeys = _read_key_file("NAQ_NATS_CREDS", path)
        problem = _credentials_problem(data, nkeys)
        if problem:
            raise ConfigurationError(
                f"NAQ_NATS_CREDS={path!r} is not a usable NATS credentials file: {problem}"
            )
    if settings.nkey_file:
        path = settings.nkey_file
        data, nkeys = _read_key_file("NAQ_NATS_NKEY", path)
        problem = _nkey_seed_problem(data, nkeys)
        if problem:
            raise ConfigurationError(f"NAQ_NATS_NKEY={path!r} is not a user nkey seed: {problem}")


def _read_key_file(variable: str, path: str) -> tuple[bytes, Any]:
    """The start of the file ``variable`` names, and the ``nkeys`` module to decode it."""
    if not os.path.isfile(path):
        raise ConfigurationError(f"{variable}={path!r}: no such file")
    try:
        nkeys = importlib.import_module("nkeys")
    except ImportError:
        raise ConfigurationError(
            f"{variable} needs the 'nkeys' package: pip install 'nats-py[nkeys]'"
        ) from None
    try:
        with open(path, "rb") as file:
            return file.read(_CREDS_LIMIT + 1), nkeys
    except OSError as exc:
        raise ConfigurationError(
            f"{variable}={path!r} cannot be read: {exc.strerror or exc}"
        ) from None


def _nkey_seed_problem(data: bytes, nkeys: Any) -> str | None:
    """What is wrong with the contents of an nkey seed file, read as nats-py reads it (the
    whole file, stripped), or ``None``. The seed itself is never part of the answer."""
    if len(data) > _CREDS_LIMIT:
        return f"larger than {_CREDS_LIMIT // 1024} KB"
    seed = data.strip()
    if not seed:
        return "the file is empty"
    if b"BEGIN NATS USER JWT" in seed:
        return "it is a creds file (JWT and seed); set NAQ_NATS_CREDS to it instead"
    try:
        prefix, _ = nkeys.decode_seed(bytearray(seed))
    except Exception:  # noqa: BLE001 - nkeys raises its own errors and binascii/value errors
        return "expected one line holding a seed starting with 'SU'"
    if prefix != nkeys.PREFIX_BYTE_USER:
        return "it is a seed, but not of a user (a user seed starts with 'SU')"
    return None


def _credentials_problem(data: bytes, nkeys: Any) -> str | None:
    """What is wrong with the contents of a credentials file, read as nats-py reads it
    (the line after each ``-----BEGIN ...-----`` marker), or ``None``."""
    if len(data) > _CREDS_LIMIT:
        return f"larger than {_CREDS_LIMIT // 1024} KB"
    lines = data.splitlines()
    jwt = _line_after(lines, b"BEGIN NATS USER JWT")
    if jwt is None:
        return "no '-----BEGIN NATS USER JWT-----' block"
    if jwt.count(b".") != 2:
        return "the user JWT after '-----BEGIN NATS USER JWT-----' is malformed"
    seed = _line_after(lines, b"BEGIN USER NKEY SEED")
    if seed is None:
        return "no '-----BEGIN USER NKEY SEED-----' block"
    try:
        nkeys.decode_seed(bytearray(seed))
    except Exception:  # noqa: BLE001 - nkeys raises its own errors and binascii/value errors
        return "the user nkey seed after '-----BEGIN USER NKEY SEED-----' is not a valid seed"
    return None


def _line_after(lines: list[bytes], marker: bytes) -> bytes | None:
    for index, line in enumerate(lines[:-1]):
        if marker in line:
            value = lines[index + 1].strip()
            return value or None
    return None
