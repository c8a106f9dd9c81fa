"""naq's JetStream storage: the streams, consumers and key-value buckets, created on first
use **and** reconciled when their configuration changed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors
import nats.js.errors
from loguru import logger
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
    SubjectTransform,
)
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from .. import constants as c
from ..errors import ConfigurationError, NaqConnectionError
from ..settings import redact_url
from . import streams
from .errors import translate

if TYPE_CHECKING:
    from .connection import Connection

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a queue's durable consumer is configured (reconciled on every worker start)."""

    ack_wait: float = 30.0
    max_ack_pending: int = 20000
    max_deliver: int = -1


class Storage:
    """Creates and caches naq's streams, consumers and buckets for one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._kv: dict[str, KeyValue] = {}
        self._ensured: set[str] = set()
        self._lock = asyncio.Lock()

    def has(self, key: str) -> bool:
        """True once the stream ``key`` (``"jobs"``, ``"dlq"``) was set up."""
        return key in self._ensured

    def forget(self) -> None:
        """Drop what was looked up (the connection closed)."""
        self._kv.clear()
        self._ensured.clear()

    async def jobs_stream(self) -> None:
        """The WorkQueue stream of every queue's jobs (no schedules, no rollups), taking
        over the jobs one-off schedules fire; and that schedules stream first."""
        if self.has("jobs"):  # every enqueue asks: answer before building configs
            return
        await self._stream(
            "schedules",
            self._work_queue(
                c.SCHEDULES_STREAM,
                [
                    f"{c.SCHEDULE_SUBJECT_PREFIX}>",
                    f"{c.DUE_SUBJECT_PREFIX}*",
                    f"{c.DUE_SUBJECT_PREFIX}*.*",
                ],
                allow_msg_schedules=True,
                allow_rollup_hdrs=True,
            ),
        )
        due_to_queue = SubjectTransform(
            src=f"{c.DUE_SUBJECT_PREFIX}*", dest=c.QUEUE_SUBJECT_PREFIX + "{{wildcard(1)}}"
        )
        due_to_priority = SubjectTransform(
            src=f"{c.DUE_SUBJECT_PREFIX}*.*",
            dest=c.QUEUE_SUBJECT_PREFIX + "{{wildcard(1)}}.{{wildcard(2)}}",
        )
        await self._stream(
            "jobs",
            self._work_queue(
                c.JOBS_STREAM,
                # naq.queue.<queue> (priority 0) and naq.queue.<queue>.<1-9>
                [f"{c.QUEUE_SUBJECT_PREFIX}*", f"{c.QUEUE_SUBJECT_PREFIX}*.*"],
                allow_msg_schedules=False,
                allow_rollup_hdrs=False,
                allow_atomic=True,  # enqueue_many(atomic=True): all jobs stored, or none
                sources=[
                    StreamSource(
                        name=c.SCHEDULES_STREAM,
                        subject_transforms=[due_to_queue, due_to_priority],
                    )
                ],
            ),
        )

    def _work_queue(self, name: str, subjects: list[str], **options: Any) -> StreamConfig:
        """A file-stored WorkQueue stream with naq's common settings plus ``options``."""
        return StreamConfig(
            name=name,
            subjects=subjects,
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=c.DUPLICATE_WINDOW,
            num_replicas=self._conn.settings.replicas,
            allow_msg_ttl=True,
            allow_direct=True,
            **options,
        )

    async def dlq_stream(self) -> None:
        """The dead-letter stream (``naq.dlq.<queue>``, kept 30 days)."""
        if self.has("dlq"):
            return
        await self._stream(
            "dlq",
            StreamConfig(
                name=c.DLQ_STREAM,
                subjects=[f"{c.DLQ_SUBJECT_PREFIX}*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_age=30 * 24 * 3600.0,
                duplicate_window=c.DUPLICATE_WINDOW,
                num_replicas=self._conn.settings.replicas,
                allow_direct=True,
            ),
        )

    async def events_stream(self) -> None:
        """The events stream (``naq.events.<queue>.<kind>``): in memory, bounded by age and
        size, the oldest events dropped first."""
        if self.has("events"):
            return
        await self._stream(
            "events",
            StreamConfig(
                name=c.EVENTS_STREAM,
                subjects=[f"{c.EVENTS_SUBJECT_PREFIX}>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.MEMORY,
                max_age=c.EVENTS_MAX_AGE,
                max_bytes=c.EVENTS_MAX_BYTES,
                discard=DiscardPolicy.OLD,
                num_replicas=self._conn.settings.replicas,
                allow_direct=True,
            ),
        )

    async def _stream(self, key: str, config: StreamConfig) -> None:
        if key in self._ensured:
            return
        async with self._lock:
            if key in self._ensured:
                return
            js = self._conn.js
            name = str(config.name)
            try:
                await self._call(js.add_stream(config), f"create stream {name}")
            except nats.js.errors.APIError as exc:
                self._check_placement(exc, f"stream {name}")
                if exc.err_code == _SUBJECTS_OVERLAP:
                    raise _older_layout(name, exc.description) from None
                if not isinstance(exc, nats.js.errors.BadRequestError):
                    raise
                # exists with another config: reconcile (update keeps messages)
                had = await self._replicas_of(name)
                try:
                    await self._call(js.update_stream(config), f"update stream {name}")
                except nats.js.errors.APIError as again:
                    self._check_placement(again, f"stream {name}", had)
                    if not isinstance(again, nats.js.errors.BadRequestError | NotFoundError):
                        raise
                    raise _older_layout(name, again.description) from None
                _log_replicas(f"stream {name}", had, config.num_replicas)
            self._ensured.add(key)

    async def _replicas_of(self, stream: str) -> int | None:
        """How many replicas ``stream`` has now (``None`` if it cannot be read)."""
        try:
            info = await self._call(self._conn.js.stream_info(stream), f"read stream {stream}")
        except nats.js.errors.APIError:
            return None
        return int(info.config.num_replicas or 1)

    def _check_placement(self, exc: Any, what: str, had: int | None = None) -> None:
        """Raise a clear :class:`ConfigurationError` when the server cannot place ``what``
        with the wanted number of replicas (a single server, or a cluster too small)."""
        wanted = self._conn.settings.replicas
        code = getattr(exc, "err_code", None)
        if code not in (_REPLICAS_UNSUPPORTED, _NO_PLACEMENT):
            return
        now = f" (it has {had})" if had is not None else ""
        where = (
            "a single server, not a cluster"
            if code == _REPLICAS_UNSUPPORTED
            else "a cluster with fewer JetStream servers than that"
        )
        raise ConfigurationError(
            f"cannot give {what} {wanted} replicas{now}: NATS at "
            f"{redact_url(self._conn.settings.nats_url)} is {where} ({exc.description}); "
            "set NAQ_REPLICAS (Settings.replicas) to at most the number of servers, "
            "1 for a single server"
        ) from None

    async def consumer(
        self,
        queue: str,
        settings: ConsumerSettings,
        priority: int = 0,
        *,
        paused_until: str | None = None,
    ) -> str:
        """The durable consumer of ``queue``'s jobs with ``priority``, created or reconciled;
        returns its name.

        Its pause (see :mod:`naq.pausing`) is the queue's: a new consumer of a priority is
        created paused while the queue's own consumer is paused; a new consumer of the queue
        itself is created paused until ``paused_until`` (RFC 3339) when that is given.
        Reconciling never changes a pause: the config it sends has no ``pause_until``, and
        the server keeps a consumer's pause across an update."""
        name = c.consumer_name(queue, priority)
        key = f"consumer:{queue}:{priority}:{settings}"
        if key in self._ensured:
            return name
        await self.jobs_stream()
        config = ConsumerConfig(
            durable_name=name,
            name=name,
            filter_subject=c.queue_subject(queue, priority),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_ack_pending,
            max_waiting=512,
            num_replicas=self._conn.settings.replicas,
        )
        js = self._conn.js
        info = await self._consumer_info(name)
        if info is None:
            if priority:
                paused_until = await self._queue_paused_until(queue)
            config.pause_until = paused_until
            await self._call(js.add_consumer(c.JOBS_STREAM, config), f"create consumer {name}")
            if priority:
                await self._follow_queue_pause(queue, name, paused_until)
        else:
            if _consumer_differs(info.config, config):
                # add_consumer with the same durable name updates a changed consumer in place
                await self._call(js.add_consumer(c.JOBS_STREAM, config), f"update consumer {name}")
                logger.info("reconciled consumer {} to {}", name, settings)
            if info.paused and not priority:
                logger.info("queue {} is paused: no job of it starts until it is resumed", queue)
        self._ensured.add(key)
        return name

    async def _consumer_info(self, name: str) -> Any:
        """The info of consumer ``name`` of the jobs stream (``None`` if there is none)."""
        js = self._conn.js
        try:
            return await self._call(js.consumer_info(c.JOBS_STREAM, name), f"read consumer {name}")
        except nats.js.errors.NotFoundError:
            return None

    async def _queue_paused_until(self, queue: str) -> str | None:
        """Until when ``queue`` is paused (its own consumer's ``pause_until``, RFC 3339);
        ``None`` when it is not paused or has no consumer."""
        info = await self._consumer_info(c.consumer_name(queue))
        if info is None or not info.paused:
            return None
        return str(info.config.pause_until) if info.config.pause_until else None

    async def _follow_queue_pause(self, queue: str, name: str, created_until: str | None) -> None:
        """After creating the priority consumer ``name``: a pause or resume of ``queue``
        that ran meanwhile may have missed it, so it is set to the queue's state as read
        now. (A pause or resume changes the queue's own consumer first, then every
        priority consumer there is: either it saw this one, or this reads its outcome.)"""
        until = await self._queue_paused_until(queue)
        if (until is None) == (created_until is None):
            return
        await streams.pause_consumer(self._conn, c.JOBS_STREAM, name, until)
        if until is None:
            streams.wake_consumer(self._conn, c.JOBS_STREAM, name)
        logger.info("consumer {} follows its queue: {}", name, "paused" if until else "resumed")

    async def bucket(self, bucket: str) -> KeyValue:
        """The key-value bucket ``bucket``, created on first use (history 1, direct gets)."""
        found = self._kv.get(bucket)
        if found is not None:
            return found
        async with self._lock:
            found = self._kv.get(bucket)
            if found is not None:
                return found
            js = self._conn.js
            try:
                kv = await self._call(js.key_value(bucket), f"open bucket {bucket}")
            except nats.js.errors.BucketNotFoundError:
                try:
                    kv = await self._call(
                        js.create_key_value(
                            KeyValueConfig(
                                bucket=bucket,
                                history=1,
                                direct=True,
                                replicas=self._conn.settings.replicas,
                            )
                        ),
                        f"create bucket {bucket}",
                    )
                except nats.js.errors.APIError as exc:
                    self._check_placement(exc, f"bucket {bucket}")
                    raise
            else:
                await self._reconcile_bucket_replicas(bucket)
            self._kv[bucket] = kv
            return kv

    async def _reconcile_bucket_replicas(self, bucket: str) -> None:
        """Give the existing ``bucket`` the configured number of replicas (its stream is
        updated in place: JetStream copies it to the new peers)."""
        js = self._conn.js
        stream = f"KV_{bucket}"
        info = await self._call(js.stream_info(stream), f"read bucket {bucket}")
        had = int(info.config.num_replicas or 1)
        wanted = self._conn.settings.replicas
        if had == wanted:
            return
        info.config.num_replicas = wanted
        try:
            await self._call(js.update_stream(info.config), f"update bucket {bucket}")
        except nats.js.errors.APIError as exc:
            self._check_placement(exc, f"bucket {bucket}", had)
            raise
        _log_replicas(f"bucket {bucket}", had, wanted)

    async def _call(self, awaitable: Awaitable[T], what: str) -> T:
        """Await a JetStream management call; connection-level failures become naq errors
        (``NotFound``/``BadRequest`` answers pass through for the caller to decide)."""
        try:
            return await awaitable
        except (nats.js.errors.NotFoundError, nats.js.errors.BadRequestError):
            raise
        except nats.js.errors.APIError as exc:
            if exc.err_code in (_REPLICAS_UNSUPPORTED, _NO_PLACEMENT):
                raise  # for the caller's clear replicas error
            raise translate(exc, what) from exc
        except (nats.errors.ConnectionClosedError, nats.errors.NoRespondersError) as exc:
            url = redact_url(self._conn.settings.nats_url)
            raise NaqConnectionError(
                f"NATS at {url} is not answering JetStream requests "
                f"({type(exc).__name__}); is JetStream enabled?"
            ) from exc
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise translate(exc, what) from exc


#: JetStream error code: a new stream's subjects overlap an existing stream's.
_SUBJECTS_OVERLAP = 10065
#: JetStream error code: "replicas > 1 not supported in non-clustered mode".
_REPLICAS_UNSUPPORTED = 10074
#: JetStream error code: "no suitable peers for placement" (more replicas than servers).
_NO_PLACEMENT = 10005


def _log_replicas(what: str, had: int | None, wanted: int | None) -> None:
    """One info line when reconciling changed the number of replicas of ``what``."""
    if had is not None and wanted is not None and had != wanted:
        logger.info("{} now has {} replicas (had {})", what, wanted, had)


def _older_layout(stream: str, detail: str | None) -> ConfigurationError:
    """The error for storage laid out by an older naq (schedules inside the jobs stream),
    which the server cannot change into today's."""
    return ConfigurationError(
        f"cannot set up stream {stream} ({detail}): the server holds naq streams laid out by "
        f"an older naq (one-off schedules inside {c.JOBS_STREAM}, which the server cannot turn "
        f"off); let its workers drain {c.JOBS_STREAM}, delete it "
        f"('nats stream rm {c.JOBS_STREAM}') and start again"
    )


def _consumer_differs(current: Any, wanted: ConsumerConfig) -> bool:
    fields = (
        "ack_wait",
        "max_deliver",
        "max_ack_pending",
        "filter_subject",
        "max_waiting",
        "num_replicas",
    )
    return any(getattr(current, f) != getattr(wanted, f) for f in fields)
