"""Settings: one frozen object built from the environment and explicit arguments.

Nothing is read at import time; :func:`load_settings` reads the environment each time it is
called, so objects created after a change of ``os.environ`` see the change.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Literal
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .names import check_queue_name

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
#: NATS' own default prefix of reply subjects.
DEFAULT_INBOX_PREFIX = "_INBOX"
_INBOX_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,3}")
DEFAULT_RESULT_TTL = 604800
_URL_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_LOG_LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"})

SerializerName = Literal["json", "pickle"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything naq reads from its environment, validated.

    Built by :func:`load_settings` from the ``NAQ_*`` variables (each field below names its
    variable); frozen. Objects that take ``settings=`` use it instead of the environment.
    """

    #: the NATS servers (``NAQ_NATS_URL``, comma-separated): more than one for a cluster
    nats_urls: tuple[str, ...] = (DEFAULT_NATS_URL,)
    #: the queue used when none is given (``NAQ_DEFAULT_QUEUE``)
    default_queue: str = "default"
    #: how job arguments and results travel (``NAQ_JOB_SERIALIZER``): ``json`` or ``pickle``
    serializer: SerializerName = "json"
    #: module prefixes a worker may run functions from, beyond its own directory
    #: (``NAQ_ALLOWED_MODULES``, comma-separated)
    allowed_modules: tuple[str, ...] = ()
    #: seconds job records and results are kept after a job ends (``NAQ_RESULT_TTL``)
    result_ttl: int = DEFAULT_RESULT_TTL
    #: replicas of the streams and buckets naq creates (``NAQ_REPLICAS``; 3 on a cluster)
    replicas: int = 1
    #: seconds an unconfirmed job publish is re-sent with the same message id before the
    #: call fails (``NAQ_PUBLISH_DEADLINE``): past a cluster's leader election, inside the
    #: streams' 2-minute duplicate window
    publish_deadline: float = 30.0
    #: the level of naq's own log lines in the processes ``naq`` starts (``NAQ_LOG_LEVEL``)
    log_level: str = "INFO"
    #: the keys of ``NAQ_SIGNING_KEY``: the first signs, every one verifies (key rotation)
    signing_keys: tuple[bytes, ...] = field(default=(), repr=False)
    #: the bearer token every dashboard request must carry (``NAQ_DASHBOARD_TOKEN``)
    dashboard_token: str | None = field(default=None, repr=False)
    #: path of a NATS ``.creds`` file to log in with (``NAQ_NATS_CREDS``)
    creds_file: str | None = None
    #: path of a file holding a user nkey seed (``NAQ_NATS_NKEY``); the seed is never shown
    nkey_file: str | None = None
    #: path of the CA certificates that signed the server's certificate (``NAQ_NATS_TLS_CA``)
    tls_ca: str | None = None
    #: path of this client's TLS certificate, for mutual TLS (``NAQ_NATS_TLS_CERT``)
    tls_cert: str | None = None
    #: path of the private key of :attr:`tls_cert` (``NAQ_NATS_TLS_KEY``)
    tls_key: str | None = None
    #: the subject prefix of this client's reply inboxes (``NAQ_NATS_INBOX_PREFIX``): with
    #: one per role, each NATS user may subscribe to its own replies only
    inbox_prefix: str = DEFAULT_INBOX_PREFIX
    #: publish job and worker events to ``naq.events.>`` (``NAQ_EVENTS=1``)
    events: bool = False

    @property
    def login(self) -> tuple[object, ...]:
        """What decides which server a connection reaches and as whom: connections are
        shared only between settings with the same login (URLs, credentials, TLS files)."""
        return (
            self.nats_urls,
            self.creds_file,
            self.nkey_file,
            self.tls_ca,
            self.tls_cert,
            self.tls_key,
            self.inbox_prefix,
        )

    def __repr__(self) -> str:
        """The fields, with passwords and tokens in the URLs replaced by ``***``."""
        shown = []
        for item in fields(self):
            if not item.repr:
                continue
            value = getattr(self, item.name)
            if item.name == "nats_urls":  # a URL may carry a password or token
                value = tuple(redact_url(url) for url in value)
            shown.append(f"{item.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def __post_init__(self) -> None:
        check_signing_keys(self.signing_keys, "signing_keys")
        check_inbox_prefix(self.inbox_prefix)

    @property
    def signing_key(self) -> bytes | None:
        """The key that signs jobs (the first of :attr:`signing_keys`), ``None`` if off."""
        return self.signing_keys[0] if self.signing_keys else None

    @property
    def nats_url(self) -> str:
        """The URLs as one comma-separated string (as given in ``NAQ_NATS_URL``)."""
        return ",".join(self.nats_urls)

    def with_url(self, nats_url: str | None) -> Settings:
        """A copy using ``nats_url`` instead (``None`` keeps the current one)."""
        if nats_url is None:
            return self
        return replace(self, nats_urls=parse_nats_urls(nats_url))


#: The shortest signing key accepted, bytes: a short key can be guessed offline from one
#: signed message.
MIN_SIGNING_KEY = 16


def check_signing_keys(keys: object, name: str) -> None:
    """Raise :class:`ConfigurationError` naming ``name`` (never showing a key) unless
    ``keys`` is a tuple of keys of at least :data:`MIN_SIGNING_KEY` bytes."""
    if not isinstance(keys, tuple) or not all(isinstance(key, bytes) for key in keys):
        raise ConfigurationError(f"{name} must be a tuple of bytes keys")
    for number, key in enumerate(keys, 1):
        if len(key) < MIN_SIGNING_KEY or not key.strip():
            raise ConfigurationError(
                f"{name}: key {number} of {len(keys)} is {len(key)} bytes long; a signing "
                f"key must have at least {MIN_SIGNING_KEY} bytes, not all whitespace"
            )


def parse_signing_keys(value: str | None) -> tuple[bytes, ...]:
    """The keys of ``NAQ_SIGNING_KEY``: comma-separated, the first signs and every one
    verifies; surrounding whitespace of each is dropped. Unset or empty: no signing."""
    if not value:
        return ()
    items = [item.strip() for item in value.split(",")]
    for number, item in enumerate(items, 1):
        if not item:
            raise ConfigurationError(
                f"NAQ_SIGNING_KEY: key {number} of {len(items)} is empty or whitespace "
                "(separate keys with single commas)"
            )
    keys = tuple(item.encode() for item in items)
    check_signing_keys(keys, "NAQ_SIGNING_KEY")
    return keys


def parse_nats_urls(value: str) -> tuple[str, ...]:
    """Split and validate a comma-separated list of NATS URLs."""
    if not isinstance(value, str):
        raise ConfigurationError(f"nats_url must be a string, not {type(value).__name__}")
    urls = tuple(part.strip() for part in value.split(",") if part.strip())
    if not urls:
        raise ConfigurationError("nats_url is empty; expected e.g. nats://127.0.0.1:4222")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in _URL_SCHEMES:
            raise ConfigurationError(
                f"invalid NATS URL {_redact(url)!r}: scheme must be one of "
                f"{', '.join(sorted(_URL_SCHEMES))} (e.g. nats://127.0.0.1:4222)"
            )
        if not parts.hostname:
            raise ConfigurationError(f"invalid NATS URL {_redact(url)!r}: no host")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigurationError(f"invalid NATS URL {_redact(url)!r}: {exc}") from None
    return urls


def redact_url(url: str) -> str:
    """``url`` with any password or token replaced by ``***`` (safe to print)."""
    return ",".join(_redact(u) for u in url.split(","))


def _redact(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.username is None and parts.password is None:
        return url.strip()
    user = parts.username or ""
    auth = f"{user}:***" if parts.password is not None else "***"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{auth}@{host}{port}{parts.path}"


def check_inbox_prefix(prefix: object, what: str = "inbox_prefix") -> str:
    """``prefix`` if it can start reply subjects (1-4 tokens of letters, digits, ``_`` and
    ``-``, no wildcards), else :class:`ConfigurationError` naming ``what``."""
    if not isinstance(prefix, str) or not _INBOX_PREFIX_RE.fullmatch(prefix):
        raise ConfigurationError(
            f"{what}={str(prefix)[:80]!r} is not a usable inbox prefix: use 1-4 dot-separated "
            "tokens of letters, digits, '_' and '-' (e.g. _INBOX_worker)"
        )
    return prefix


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise :class:`ConfigurationError`
    (the rule: :func:`naq.names.check_queue_name`)."""
    return check_queue_name(name)


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigurationError(f"{name}={value} must be >= {minimum}")
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _env_flag(name: str) -> bool:
    raw = os.environ.get(name) or ""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a yes/no value (use 1 or 0)")


def _urls(value: str, *, from_env: bool) -> tuple[str, ...]:
    try:
        return parse_nats_urls(value)
    except ConfigurationError as exc:
        if from_env:  # name the variable the bad value came from
            raise ConfigurationError(f"NAQ_NATS_URL: {exc}") from None
        raise


def load_settings(nats_url: str | None = None) -> Settings:
    """Build :class:`Settings` from ``NAQ_*`` environment variables and ``nats_url``."""
    env = os.environ
    url = nats_url if nats_url is not None else env.get("NAQ_NATS_URL") or DEFAULT_NATS_URL
    serializer = (env.get("NAQ_JOB_SERIALIZER") or "json").strip().lower()
    if serializer not in ("json", "pickle"):
        raise ConfigurationError(
            f"NAQ_JOB_SERIALIZER={serializer!r} is not supported; use 'json' or 'pickle'"
        )
    raw_level = env.get("NAQ_LOG_LEVEL") or "INFO"
    level = raw_level.strip().upper()
    if level not in _LOG_LEVELS:
        raise ConfigurationError(
            f"NAQ_LOG_LEVEL={raw_level!r} is not a log level "
            f"(one of {', '.join(sorted(_LOG_LEVELS))})"
        )
    allowed = tuple(
        p.strip() for p in (env.get("NAQ_ALLOWED_MODULES") or "").split(",") if p.strip()
    )
    key = env.get("NAQ_SIGNING_KEY")
    return Settings(
        nats_urls=_urls(url, from_env=nats_url is None and bool(env.get("NAQ_NATS_URL"))),
        default_queue=validate_queue_name(env.get("NAQ_DEFAULT_QUEUE") or "default"),
        serializer="pickle" if serializer == "pickle" else "json",
        allowed_modules=allowed,
        result_ttl=_env_int("NAQ_RESULT_TTL", DEFAULT_RESULT_TTL, 1),
        replicas=_env_int("NAQ_REPLICAS", 1, 1),
        publish_deadline=float(_env_int("NAQ_PUBLISH_DEADLINE", 30, 1)),
        log_level=level,
        signing_keys=parse_signing_keys(key),
        dashboard_token=env.get("NAQ_DASHBOARD_TOKEN") or None,
        creds_file=env.get("NAQ_NATS_CREDS") or None,
        nkey_file=env.get("NAQ_NATS_NKEY") or None,
        tls_ca=env.get("NAQ_NATS_TLS_CA") or None,
        tls_cert=env.get("NAQ_NATS_TLS_CERT") or None,
        tls_key=env.get("NAQ_NATS_TLS_KEY") or None,
        events=_env_flag("NAQ_EVENTS"),
        inbox_prefix=check_inbox_prefix(
            env.get("NAQ_NATS_INBOX_PREFIX") or DEFAULT_INBOX_PREFIX, "NAQ_NATS_INBOX_PREFIX"
        ),
    )
