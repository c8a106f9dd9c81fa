"""Pausing a queue: workers take no new job from it until it is resumed.

The pause lives in the queue's consumers themselves (JetStream consumer pause, nats-server
2.11+), no record of its own: the queue's consumer ``naq-<queue>`` and each of its priority
consumers ``naqp<p>-<queue>`` are paused until a time a hundred years away. Workers need no
telling: they keep asking, and a paused consumer delivers nothing; jobs running when the
queue is paused finish and are acknowledged as usual. A worker started or restarted while
the queue is paused finds its consumers paused (reconciling a consumer never changes its
pause), and a priority consumer created meanwhile is created paused, following the queue's
own consumer (:meth:`naq.transport.storage.Storage.consumer`).

Both calls change the queue's own consumer first, then its priority consumers: a priority
consumer being created at the same time is either seen here or reads the outcome.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from . import constants as c
from .errors import ConfigurationError
from .settings import validate_queue_name
from .transport import Connection, ConsumerSettings, streams
from .transport.errors import translated

#: How long a pause lasts unless resumed: for good, as far as anyone is concerned.
PAUSE_LENGTH = timedelta(days=100 * 365)


async def pause_queue(conn: Connection, queue: str) -> None:
    """Pause ``queue``: from now on no worker starts a job of it (of any priority) until
    :func:`resume_queue`; running jobs finish. Pausing a paused queue changes nothing.

    A queue without a consumer yet (no worker ever took its jobs) gets one, paused: a worker
    started later takes nothing from it, and ``naq queues`` lists it as paused."""
    validate_queue_name(queue)
    await conn.ensure_jobs_stream()
    until = streams.rfc3339(datetime.now(UTC) + PAUSE_LENGTH)
    own = c.consumer_name(queue)
    if await streams.pause_consumer(conn, c.JOBS_STREAM, own, until) is None:
        with translated(f"set-up of the consumer of queue {queue}"):
            await conn.storage.consumer(queue, ConsumerSettings(), paused_until=until)
        # a worker may have created it unpaused just before
        await streams.pause_consumer(conn, c.JOBS_STREAM, own, until)
    await asyncio.gather(
        *(
            streams.pause_consumer(conn, c.JOBS_STREAM, c.consumer_name(queue, p), until)
            for p in c.PRIORITY_LEVELS
        )
    )


async def resume_queue(conn: Connection, queue: str) -> None:
    """Resume ``queue``: its workers take its jobs again at once. Resuming a queue that is
    not paused changes nothing; a queue without a consumer (never paused, no worker ever
    took its jobs: a misspelt name?) raises :class:`~naq.ConfigurationError`."""
    validate_queue_name(queue)
    await conn.ensure_jobs_stream()
    own = c.consumer_name(queue)
    if await streams.pause_consumer(conn, c.JOBS_STREAM, own, None) is None:
        raise ConfigurationError(
            f"no queue {queue!r} to resume: it has no consumer (it was never paused and no "
            "worker has taken its jobs)"
        )
    names = [c.consumer_name(queue, p) for p in c.PRIORITY_LEVELS]
    found = await asyncio.gather(
        *(streams.pause_consumer(conn, c.JOBS_STREAM, name, None) for name in names)
    )
    # pull requests that waited through the pause are served now, not at their next chance
    for name in [
        own,
        *(name for name, state in zip(names, found, strict=True) if state is not None),
    ]:
        streams.wake_consumer(conn, c.JOBS_STREAM, name)
    await conn.flush()
