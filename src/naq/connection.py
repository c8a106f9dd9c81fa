"""The one module that talks to ``nats.connect``: connecting, auth, TLS, reconnects, and the
``ensure_*`` helpers that create **and reconcile** naq's streams, consumers and buckets."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from loguru import logger
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from . import constants as c
from .errors import ConfigurationError, NaqConnectionError
from .publisher import AckedPublisher
from .settings import Settings, redact_url

ReconnectListener = Callable[[], Awaitable[None]]

_SERVER_HINT = "start one with 'naq server' or set NAQ_NATS_URL"


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a queue's durable consumer is configured (reconciled on every worker start)."""

    ack_wait: float = 30.0
    max_ack_pending: int = 20000
    max_deliver: int = -1


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for the configured CA / client certificate, or ``None``."""
    if not (settings.tls_ca or settings.tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert:
        if not settings.tls_key:
            raise ConfigurationError("NAQ_NATS_TLS_CERT is set but NAQ_NATS_TLS_KEY is not")
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


def describe_failure(url: str, error: BaseException | None) -> str:
    """One line saying why connecting to ``url`` failed, and what to do about it."""
    if isinstance(error, nats.errors.AuthorizationError) or (
        error is not None and "authorization" in str(error).lower()
    ):
        return (
            f"NATS at {url} refused the login (authorization violation); "
            "check the user, password, token or creds"
        )
    if isinstance(error, ssl.SSLError) or (error is not None and "tls" in str(error).lower()):
        return f"TLS handshake with NATS at {url} failed: {error}"
    return f"cannot reach NATS at {url}; {_SERVER_HINT}"


class Connection:
    """An open NATS connection plus naq's JetStream storage, created lazily and cached.

    Whoever opens a :class:`Connection` closes it; helpers that borrow one never do.
    """

    def __init__(self, settings: Settings, *, name: str = "naq") -> None:
        self.settings = settings
        self.name = name
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._kv: dict[str, KeyValue] = {}
        self._ensured: set[str] = set()
        self._lock = asyncio.Lock()
        self._reconnect_listeners: list[ReconnectListener] = []
        self._last_error: BaseException | None = None
        self._publisher: AckedPublisher | None = None

    # -- connecting -----------------------------------------------------------------------
    @property
    def nc(self) -> NatsClient:
        """The nats-py client (raises if not connected)."""
        if self._nc is None:
            raise NaqConnectionError("not connected; call 'await connection.connect()' first")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of :attr:`nc`."""
        if self._js is None:
            raise NaqConnectionError("not connected; call 'await connection.connect()' first")
        return self._js

    @property
    def closed(self) -> bool:
        """True once the client was closed (or never opened)."""
        return self._nc is None or bool(self._nc.is_closed)

    @property
    def is_connected(self) -> bool:
        """True while the underlying client is connected (not closed or reconnecting)."""
        return self._nc is not None and bool(self._nc.is_connected)

    async def connect(self, timeout: float = 5.0) -> Connection:
        """Connect once; raises :class:`NaqConnectionError` with one clear line on failure.

        After the first success the client reconnects forever by itself.
        """
        if self._nc is not None:
            return self
        settings = self.settings
        shown = redact_url(settings.nats_url)
        options: dict[str, Any] = {
            "servers": list(settings.nats_urls),
            "name": self.name,
            "connect_timeout": 2,
            "reconnect_time_wait": 0.25,
            "max_reconnect_attempts": 1,
            "ping_interval": 10,
            "max_outstanding_pings": 3,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "pending_size": 64 * 1024 * 1024,
        }
        tls = tls_context(settings)
        if tls is not None:
            options["tls"] = tls
        if settings.creds_file:
            options["user_credentials"] = settings.creds_file
        nc = NatsClient()
        try:
            await asyncio.wait_for(nc.connect(**options), timeout)
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            error = self._last_error or exc
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - best effort
                pass
            raise NaqConnectionError(describe_failure(shown, error)) from None
        # From now on reconnect forever (the initial attempt had to fail fast).
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._js = nc.jetstream(timeout=10.0)
        self._publisher = AckedPublisher(nc)
        await self._publisher.start()
        return self

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> int:
        """Publish to a JetStream subject and wait until the server stored it (pipelined);
        returns the stream sequence (for a KV key: its new revision)."""
        return await (await self.send(subject, payload, headers))

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        """Publish to a JetStream subject; the future resolves to the stream sequence once
        the server stored it, or raises its refusal."""
        return await self._acked_publisher().send(subject, payload, headers)

    def send_nowait(
        self, subject: str, payload: bytes, header_block: bytes | None = None
    ) -> asyncio.Future[int]:
        """:meth:`send` without a coroutine, for hot paths; ``header_block`` is from
        :func:`naq.wire.encode_headers`."""
        return self._acked_publisher().send_nowait(subject, payload, header_block)

    def _acked_publisher(self) -> AckedPublisher:
        if self._publisher is None:
            raise NaqConnectionError("not connected; call 'await connection.connect()' first")
        return self._publisher

    async def publish_idempotent(
        self, subject: str, payload: bytes, headers: dict[str, str], what: str
    ) -> None:
        """Publish a message carrying a ``Nats-Msg-Id``, retrying through timeouts and leader
        elections with the same id (the stream stores it once); ``what`` names it in errors."""
        for attempt in range(3):
            try:
                await self.publish(subject, payload, headers)
                return
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError):
                if attempt == 2:
                    raise NaqConnectionError(
                        f"NATS did not confirm {what}; it may not be stored"
                    ) from None
                await asyncio.sleep(0.2 * (attempt + 1))

    async def close(self) -> None:
        """Flush and close the connection."""
        nc, self._nc, self._js = self._nc, None, None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        self._kv.clear()
        self._ensured.clear()
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), 5.0)
            except Exception:  # noqa: BLE001 - closing anyway
                await nc.close()

    def add_reconnect_listener(self, listener: ReconnectListener) -> None:
        """Call ``listener`` after every successful reconnect (e.g. to re-issue pull requests)."""
        self._reconnect_listeners.append(listener)

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        if self._nc is not None:  # only after the first successful connect
            logger.debug("NATS connection error: {}", error)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:
            logger.warning("disconnected from NATS; reconnecting")

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS")
        for listener in list(self._reconnect_listeners):
            try:
                await listener()
            except Exception as exc:  # noqa: BLE001 - a listener must not break the client
                logger.warning("reconnect listener failed: {}", exc)

    # -- storage --------------------------------------------------------------------------
    async def ensure_jobs_stream(self) -> None:
        """Create or reconcile the WorkQueue stream holding every queue's jobs and schedules."""
        await self._ensure_stream(
            "jobs",
            StreamConfig(
                name=c.JOBS_STREAM,
                subjects=[f"{c.QUEUE_SUBJECT_PREFIX}*", f"{c.SCHEDULE_SUBJECT_PREFIX}>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                discard=DiscardPolicy.OLD,
                duplicate_window=c.DUPLICATE_WINDOW,
                num_replicas=self.settings.replicas,
                allow_msg_ttl=True,
                allow_msg_schedules=True,
                allow_rollup_hdrs=True,
                allow_direct=True,
            ),
        )

    async def ensure_dlq_stream(self) -> None:
        """Create or reconcile the dead-letter stream (``naq.dlq.<queue>``, kept 30 days)."""
        await self._ensure_stream(
            "dlq",
            StreamConfig(
                name=c.DLQ_STREAM,
                subjects=[f"{c.DLQ_SUBJECT_PREFIX}*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=30 * 24 * 3600.0,
                duplicate_window=c.DUPLICATE_WINDOW,
                num_replicas=self.settings.replicas,
                allow_direct=True,
            ),
        )

    async def _ensure_stream(self, key: str, config: StreamConfig) -> None:
        if key in self._ensured:
            return
        async with self._lock:
            if key in self._ensured:
                return
            try:
                await self._translate(self.js.add_stream(config))
            except nats.js.errors.BadRequestError:
                # exists with another config: reconcile (update keeps messages)
                await self._translate(self.js.update_stream(config))
            self._ensured.add(key)

    async def ensure_consumer(self, queue: str, settings: ConsumerSettings) -> str:
        """Create or reconcile the durable consumer of ``queue``; returns its name."""
        name = c.consumer_name(queue)
        key = f"consumer:{queue}:{settings}"
        if key in self._ensured:
            return name
        await self.ensure_jobs_stream()
        config = ConsumerConfig(
            durable_name=name,
            name=name,
            filter_subject=c.queue_subject(queue),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
            max_waiting=512,
            num_replicas=self.settings.replicas,
        )
        try:
            info = await self._translate(self.js.consumer_info(c.JOBS_STREAM, name))
        except nats.js.errors.NotFoundError:
            info = None
        if info is None or _consumer_differs(info.config, config):
            # add_consumer with the same durable name updates a changed consumer in place
            await self._translate(self.js.add_consumer(c.JOBS_STREAM, config))
            if info is not None:
                logger.info("reconciled consumer {} to {}", name, settings)
        self._ensured.add(key)
        return name

    async def kv(self, bucket: str) -> KeyValue:
        """The key-value bucket ``bucket``, created on first use (history 1, direct gets)."""
        found = self._kv.get(bucket)
        if found is not None:
            return found
        async with self._lock:
            found = self._kv.get(bucket)
            if found is not None:
                return found
            try:
                kv = await self._translate(self.js.key_value(bucket))
            except nats.js.errors.BucketNotFoundError:
                kv = await self._translate(
                    self.js.create_key_value(
                        KeyValueConfig(
                            bucket=bucket,
                            history=1,
                            direct=True,
                            replicas=self.settings.replicas,
                        )
                    )
                )
            self._kv[bucket] = kv
            return self._kv[bucket]

    async def _translate(self, awaitable: Awaitable[Any]) -> Any:
        """Await ``awaitable``, turning connection-level nats errors into NaqConnectionError."""
        try:
            return await awaitable
        except (nats.errors.ConnectionClosedError, nats.errors.NoRespondersError) as exc:
            raise NaqConnectionError(
                f"NATS at {redact_url(self.settings.nats_url)} is not answering JetStream requests "
                f"({type(exc).__name__}); is JetStream enabled?"
            ) from exc
        except nats.errors.TimeoutError as exc:
            raise NaqConnectionError(
                f"NATS at {redact_url(self.settings.nats_url)} did not answer in time"
            ) from exc


def _consumer_differs(current: ConsumerConfig, wanted: ConsumerConfig) -> bool:
    fields = ("ack_wait", "max_deliver", "max_ack_pending", "filter_subject", "max_waiting")
    return any(getattr(current, f) != getattr(wanted, f) for f in fields)
