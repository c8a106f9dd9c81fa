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
from nats.js.kv import KeyValue

from .. import constants as c
from ..errors import ConfigurationError, NaqConnectionError
from ..settings import redact_url
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

    async def _stream(self, key: str, config: StreamConfig) -> None:
        if key in self._ensured:
            return
        async with self._lock:
            if key in self._ensured:
                return
            js = self._conn.js
            try:
                await self._call(js.add_stream(config), f"create stream {config.name}")
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code == _SUBJECTS_OVERLAP:
                    raise _older_layout(str(config.name), exc.description) from None
                # exists with another config: reconcile (update keeps messages)
                try:
                    await self._call(js.update_stream(config), f"update stream {config.name}")
                except (nats.js.errors.BadRequestError, nats.js.errors.NotFoundError) as again:
                    raise _older_layout(str(config.name), again.description) from None
            self._ensured.add(key)

    async def consumer(self, queue: str, settings: ConsumerSettings, priority: int = 0) -> str:
        """The durable consumer of ``queue``'s jobs with ``priority``, created or reconciled;
        returns its name."""
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
        try:
            info = await self._call(js.consumer_info(c.JOBS_STREAM, name), f"read consumer {name}")
        except nats.js.errors.NotFoundError:
            info = None
        if info is None or _consumer_differs(info.config, config):
            # add_consumer with the same durable name updates a changed consumer in place
            await self._call(js.add_consumer(c.JOBS_STREAM, config), f"create consumer {name}")
            if info is not None:
                logger.info("reconciled consumer {} to {}", name, settings)
        self._ensured.add(key)
        return name

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
            self._kv[bucket] = kv
            return kv

    async def _call(self, awaitable: Awaitable[T], what: str) -> T:
        """Await a JetStream management call; connection-level failures become naq errors
        (``NotFound``/``BadRequest`` answers pass through for the caller to decide)."""
        try:
            return await awaitable
        except (nats.js.errors.NotFoundError, nats.js.errors.BadRequestError):
            raise
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
    fields = ("ack_wait", "max_deliver", "max_ack_pending", "filter_subject", "max_waiting")
    return any(getattr(current, f) != getattr(wanted, f) for f in fields)
