"""The one place that calls ``nats.connect``: connecting, auth, TLS, reconnects, and what a
connection can do for the layers above (publish, request, subscribe), in naq's terms.

Storage setup (streams, consumers, buckets) is in :mod:`naq.transport.storage`; key-value
and stream reads and writes in :mod:`naq.transport.kv` and :mod:`naq.transport.streams`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from loguru import logger
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ..errors import (
    NaqConnectionError,
    NaqTimeoutError,
    PublishNotConfirmedError,
    ServerError,
)
from ..settings import Settings, redact_url
from .connect_failures import (
    ClientCertificateError,
    TlsRequiredError,
    client_certificate_missing,
    client_certificate_refused,
    connect_failure,
    is_final,
    tls_not_required,
)
from .credentials import check_credentials, tls_context, wants_tls
from .errors import AnnotatedTimeoutError, api_error, translate, translated
from .names import check_size, check_subject
from .publisher import AckedPublisher
from .refusals import InFlight
from .storage import ConsumerSettings, Storage
from .wire import publish_now, subscribe_direct

ReconnectListener = Callable[[], Awaitable[None]]
#: A server error seen this recently is named in a timeout that follows it.
_ERROR_MEMORY = 10.0
#: How long closing a client whose connect failed may take (its socket is gone already).
_CLOSE_AFTER_FAILURE = 0.2


def _no_note(since: float | None = None) -> str:
    return ""


class _Client(NatsClient):
    """nats-py's client, refusing a server that does not require TLS when TLS was asked for,
    and failing a request at once when the server refuses its subject.

    nats-py upgrades to TLS only when the server's INFO says ``tls_required``; a server (or
    someone in between) answering without it would receive the login in clear text.
    """

    naq_require_tls = False
    naq_has_client_cert = False
    #: True once the server's INFO said it verifies client certificates
    naq_tls_verify = False
    naq_url = ""
    #: Requests waiting for their reply, failed by :meth:`InFlight.refuse` when refused.
    naq_in_flight: InFlight | None = None
    #: Says what the server reported since shortly before ``since`` (a monotonic time),
    #: to append to a timeout, or ``""``.
    naq_recent_error: Callable[[float | None], str] = staticmethod(_no_note)
    _naq_reply_prefix = ""

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if self.naq_require_tls and initial_connection and not info.get("tls_required"):
            raise TlsRequiredError(tls_not_required(self.naq_url))
        if initial_connection and info.get("tls_verify"):
            self.naq_tls_verify = True
            if not self.naq_has_client_cert:
                raise ClientCertificateError(client_certificate_missing(self.naq_url))
        await super()._process_info(info, initial_connection)

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        if reply and self.naq_in_flight is not None:
            self._track_request(subject, reply)
        await super().publish(subject, payload, reply=reply, headers=headers)

    def _track_request(self, subject: str, reply: str) -> None:
        """Remember the reply future of a request (``request`` publishes with the reply
        subject ``<prefix><token>``; the future waits in ``_resp_map[token]``)."""
        prefix = self._naq_reply_prefix
        if not prefix:
            raw = self._resp_sub_prefix
            if not raw:
                return
            prefix = self._naq_reply_prefix = bytes(raw).decode()
        if reply.startswith(prefix) and self.naq_in_flight is not None:
            future = self._resp_map.get(reply[len(prefix) :])
            if future is not None:
                self.naq_in_flight.track(subject, future)

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,
        old_style: bool = False,
        headers: dict[str, Any] | None = None,
    ) -> Msg:
        started = time.monotonic()
        try:
            return await super().request(
                subject, payload, timeout=timeout, old_style=old_style, headers=headers
            )
        except nats.errors.TimeoutError as exc:
            note = self.naq_recent_error(started)
            if not note or isinstance(exc, AnnotatedTimeoutError):
                raise
            raise AnnotatedTimeoutError(note) from None


class Subscription:
    """A core NATS subscription handed to a layer above the boundary."""

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        """Stop receiving (quietly: the connection may be gone)."""
        try:
            await self._sub.unsubscribe()
        except Exception as exc:  # noqa: BLE001 - closing anyway
            logger.debug("unsubscribe: {}", exc)


class Connection:
    """An open NATS connection plus naq's JetStream storage, created lazily and cached.

    Whoever opens a :class:`Connection` closes it; helpers that borrow one never do.
    """

    def __init__(self, settings: Settings, *, name: str = "naq") -> None:
        self.settings = settings
        self.name = name
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._reconnect_listeners: list[ReconnectListener] = []
        self._first_error: BaseException | None = None
        self._server_error: tuple[float, str] | None = None
        self._publisher: AckedPublisher | None = None
        self._in_flight = InFlight()
        self._closing = False
        self._connecting = asyncio.Lock()
        self._ever_connected = False
        #: The client while its first connect runs (its errors are judged by what it saw).
        self._connecting_client: _Client | None = None
        #: Why the server closed the connection, if it did so by itself (then it is gone:
        #: nats-py does not reconnect after a protocol error from the server).
        self.lost: str | None = None
        self.storage = Storage(self)

    # -- connecting -----------------------------------------------------------------------
    @property
    def nc(self) -> NatsClient:
        """The nats-py client (raises if not connected); for the boundary's own modules."""
        if self._nc is None:
            raise NaqConnectionError("not connected; call 'await connection.connect()' first")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of :attr:`nc`; for the boundary's own modules."""
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

    @property
    def max_payload(self) -> int:
        """The largest message (payload plus headers) the server accepts, in bytes."""
        return int(self.nc.max_payload)

    @property
    def reconnects(self) -> int:
        """How many times the client reconnected since it connected."""
        return int(self.nc.stats.get("reconnects", 0)) if self._nc is not None else 0

    async def connect(self, timeout: float = 5.0) -> Connection:
        """Connect once; raises :class:`NaqConnectionError` (:class:`NaqTimeoutError` when
        the attempt timed out, or :class:`ConfigurationError` for settings that cannot work)
        with one clear line on failure.

        After the first success the client reconnects forever by itself.
        """
        if self._nc is not None:
            return self
        async with self._connecting:  # concurrent first calls share one connect
            if self._nc is not None:
                return self
            return await self._connect(timeout)

    @property
    def dead(self) -> bool:
        """True once a connection that was open is closed (never for one not opened yet)."""
        return self._ever_connected and self.closed

    async def _connect(self, timeout: float) -> Connection:
        settings = self.settings
        shown = redact_url(settings.nats_url)
        check_credentials(settings)
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
            "closed_cb": self._on_closed,
            "pending_size": 64 * 1024 * 1024,
            "inbox_prefix": settings.inbox_prefix,
        }
        tls = tls_context(settings)
        if tls is not None:
            options["tls"] = tls
        if settings.creds_file:
            options["user_credentials"] = settings.creds_file
        if settings.nkey_file:
            options["nkeys_seed"] = settings.nkey_file
        nc = _Client()
        nc.naq_require_tls = wants_tls(settings)
        nc.naq_has_client_cert = bool(settings.tls_cert)
        nc.naq_url = shown
        nc.naq_in_flight = self._in_flight
        nc.naq_recent_error = self._recent_error_note
        self._first_error = None
        self._connecting_client = nc
        try:
            await asyncio.wait_for(nc.connect(**options), timeout)
        except Exception as exc:  # noqa: BLE001 - whatever failed, one line naming why
            error = self._first_error or exc
            try:  # bounded: after a failed TLS handshake nats-py's close waits forever
                await asyncio.wait_for(nc.close(), _CLOSE_AFTER_FAILURE)
            except Exception:  # noqa: BLE001 - best effort
                pass
            raise connect_failure(shown, error) from None
        finally:
            self._connecting_client = None
        # From now on reconnect forever (the initial attempt had to fail fast).
        nc.options["max_reconnect_attempts"] = -1
        self._nc = nc
        self._ever_connected = True
        self._js = nc.jetstream(timeout=10.0)
        self._publisher = AckedPublisher(nc, retry_within=settings.publish_deadline)
        await self._publisher.start()
        return self

    # -- publishing -----------------------------------------------------------------------
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
        the server stored it, or raises its refusal (a naq error)."""
        future = await self._acked_publisher().send(subject, payload, headers)
        self._in_flight.track(subject, future)
        return future

    def send_nowait(
        self, subject: str, payload: bytes, header_block: bytes | None = None
    ) -> asyncio.Future[int]:
        """:meth:`send` without a coroutine, for hot paths; ``header_block`` is from
        :func:`naq.transport.encode_headers`."""
        future = self._acked_publisher().send_nowait(subject, payload, header_block)
        self._in_flight.track(subject, future)
        return future

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
            except PublishNotConfirmedError as exc:  # re-sent until its deadline already
                raise PublishNotConfirmedError(f"{what}: {exc}") from None
            except (NaqTimeoutError, ServerError) as exc:
                retry = isinstance(exc, NaqTimeoutError) or exc.code == 503
                if not retry:
                    raise
                if attempt == 2:
                    message = (
                        f"NATS did not confirm {what}; it may not be stored"
                        f"{self._recent_error_note()}"
                    )
                    if isinstance(exc, NaqTimeoutError):
                        raise NaqTimeoutError(message) from None
                    raise ServerError(message, code=exc.code, err_code=exc.err_code) from None
                await asyncio.sleep(0.2 * (attempt + 1))

    def check_message(self, subject: str, payload: bytes, header_block: bytes | None) -> None:
        """Raise now what sending this message would raise (a bad subject, over-size), so a
        caller can refuse a whole call before anything of it is sent."""
        check_subject(subject)
        size = len(payload) + (len(header_block) if header_block else 0)
        if size > self.max_payload:
            check_size(size, self.max_payload, f"message to {subject[:80]}")

    # -- requests and subscriptions ---------------------------------------------------------
    async def api(self, what: str, request: dict[str, Any], timeout: float = 10.0) -> Any:
        """A JetStream API request (``$JS.API.<what>``) with a JSON body; the decoded reply,
        or :class:`~naq.errors.ServerError` with the server's refusal."""
        subject = check_subject(f"$JS.API.{what}")
        try:
            reply = await self.nc.request(subject, json.dumps(request).encode(), timeout=timeout)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise translate(exc, f"JetStream request {what}") from None
        try:
            data = json.loads(reply.data)
        except ValueError:
            raise ServerError(f"NATS sent an unreadable answer to {what}") from None
        if isinstance(data, dict) and "error" in data:
            raise api_error(data["error"], f"JetStream request {what}")
        return data

    async def subscribe(self, subject: str, handler: Callable[[Msg], None]) -> Subscription:
        """A core subscription calling ``handler`` (a plain function, on the loop) for each
        message as soon as it is parsed."""
        check_subject(subject)
        try:
            return Subscription(await subscribe_direct(self.nc, subject, handler))
        except (nats.errors.Error, OSError) as exc:
            raise translate(exc, f"subscribe to {subject}") from None

    def post(self, subject: str, payload: bytes, reply: str = "") -> None:
        """A core publish without waiting (e.g. a pull request); checked like every other."""
        publish_now(self.nc, subject, payload, reply)

    def new_inbox(self) -> str:
        """A fresh inbox subject for replies."""
        return str(self.nc.new_inbox())

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait until the server has processed everything sent so far."""
        try:
            await self.nc.flush(timeout=max(1, round(timeout)))
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise translate(exc, "flush") from None

    # -- closing and events -----------------------------------------------------------------
    async def close(self) -> None:
        """Flush and close the connection."""
        self._closing = True
        nc, self._nc, self._js = self._nc, None, None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        self.storage.forget()
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.drain(), 5.0)
            except Exception:  # noqa: BLE001 - closing anyway
                await nc.close()

    def add_reconnect_listener(self, listener: ReconnectListener) -> None:
        """Call ``listener`` after every successful reconnect (e.g. to re-issue pull requests)."""
        self._reconnect_listeners.append(listener)

    def _recent_error_note(self, since: float | None = None) -> str:
        """What the server reported last, if that was at most ``_ERROR_MEMORY`` seconds
        ago or before ``since`` (the start of whatever timed out), else ``""``."""
        if self._server_error is None:
            return ""
        seen, text = self._server_error
        horizon = time.monotonic() if since is None else min(since, time.monotonic())
        if seen < horizon - _ERROR_MEMORY:
            return ""
        return f" (the server said: {text})"

    async def _on_error(self, error: Exception) -> None:
        if self._nc is None:  # connecting: keep the first, most telling error (an
            # authorization violation is followed by the server's socket reset)
            client = self._connecting_client
            if client is not None and client.naq_tls_verify and not is_final(error):
                # the server checks client certificates and hung up on ours
                error = ClientCertificateError(client_certificate_refused(client.naq_url))
            if self._first_error is None or is_final(error):
                self._first_error = error
            if client is not None and is_final(error):
                raise error  # out of nats-py's connect loop (no second attempt); never
                # while closing (then the client is no longer connecting)
            return
        text = str(error).strip()
        self._server_error = (time.monotonic(), text)
        if self._in_flight.refuse(text):
            logger.debug("NATS refused an operation (its caller gets the error): {}", text)
        elif "permissions violation" in text.lower():
            logger.warning("NATS refused an operation: {}", text)
        else:
            logger.debug("NATS connection error: {}", text)

    async def _on_disconnected(self) -> None:
        if self._nc is not None and not self._closing:
            logger.warning("disconnected from NATS; reconnecting")

    async def _on_closed(self) -> None:
        if self._nc is None or self._closing:
            return
        reason = str(self._nc.last_error or "closed by the server")
        self.lost = reason
        logger.error("the NATS connection was closed and will not reconnect: {}", reason)

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS")
        for listener in list(self._reconnect_listeners):
            try:
                await listener()
            except Exception as exc:  # noqa: BLE001 - a listener must not break the client
                logger.warning("reconnect listener failed: {}", exc)

    # -- storage (see naq.transport.storage) -----------------------------------------------
    # A refusal storage passes through for its own decisions (NotFound, BadRequest) that it
    # did not handle is translated here: nothing of nats-py leaves the boundary.
    async def ensure_jobs_stream(self) -> None:
        """Create or reconcile the WorkQueue stream of every queue's jobs and schedules."""
        if self.storage.has("jobs"):  # every enqueue asks: the cheap answer first
            return
        with translated("set-up of the jobs stream"):
            await self.storage.jobs_stream()

    async def ensure_dlq_stream(self) -> None:
        """Create or reconcile the dead-letter stream."""
        if self.storage.has("dlq"):
            return
        with translated("set-up of the dead-letter stream"):
            await self.storage.dlq_stream()

    async def ensure_events_stream(self) -> None:
        """Create the events stream if needed (looked up once)."""
        if self.storage.has("events"):
            return
        with translated("set-up of the events stream"):
            await self.storage.events_stream()

    async def ensure_consumer(
        self, queue: str, settings: ConsumerSettings, priority: int = 0
    ) -> str:
        """Create or reconcile the durable consumer of ``queue`` (of its jobs with
        ``priority``); returns its name."""
        with translated(f"set-up of the consumer of queue {queue}"):
            return await self.storage.consumer(queue, settings, priority)

    async def ensure_bucket(self, bucket: str) -> None:
        """Create the key-value bucket ``bucket`` if it does not exist (looked up once)."""
        with translated(f"set-up of bucket {bucket}"):
            await self.storage.bucket(bucket)
