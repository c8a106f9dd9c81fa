"""A hand-written JetStream pull loop for one queue: one inbox subscription, ``MSG.NEXT``
requests sized to the worker's free capacity, long-polling while idle.

Faster than nats-py's ``fetch()`` (which awaits each message separately) and in control of
flow: the worker never asks for more jobs than it has room for (plus what is in flight)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from loguru import logger

from .. import constants as c
from ..transport import Connection, Message, Subscription, streams

#: How long one pull request waits on the server for messages (long poll), seconds.
PULL_EXPIRES = 10.0
#: After a notify, how many "none" answers are asked again, and how long apart (seconds).
NOTIFY_RECHECKS, NOTIFY_RECHECK_DELAY = 5, 0.002
_STATUS = "Status"
_PENDING_MSGS = "Nats-Pending-Messages"


class Puller:
    """Keeps pull requests outstanding for one queue's durable consumer.

    The consumer of a priority above 0 is asked with ``no_wait`` requests instead (answered
    at once, messages or "none"), and only while it may have jobs: at every fill, after the
    worker was told a job was published on its subject (:meth:`notify`), and once a second
    (:meth:`refresh`, for retries coming due). ``on_answer`` is called when such a request
    is answered, so the worker can then ask the lower priorities for the rest."""

    def __init__(
        self,
        conn: Connection,
        queue: str,
        consumer: str,
        on_job: Callable[[str, Message, int], None],
        room: Callable[[], int],
        priority: int = 0,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self.priority = priority
        self.consumer = consumer
        self.no_wait = priority > 0
        self.maybe_waiting = True  # (no_wait) jobs may be waiting: worth asking
        self._recheck = 0  # (no_wait) "none" answers still to be asked again after a notify
        self._on_answer = on_answer
        self._conn = conn
        self._next_subject = streams.pull_subject(c.JOBS_STREAM, consumer)
        self._on_job = on_job
        self._room = room
        self._inbox = ""
        self._outstanding = 0
        self._last_request = 0.0
        self._stopped = False
        self._sub: Subscription | None = None
        self.idle = asyncio.Event()  # set when the server said there is nothing to deliver

    async def start(self) -> None:
        """Subscribe the inbox and send the first request (once)."""
        if self._sub is not None:
            return
        self._inbox = self._conn.new_inbox()
        self._sub = await self._conn.subscribe(self._inbox, self._on_message)
        self.request_more()

    async def stop(self) -> None:
        """Stop asking for messages (messages already delivered still arrive)."""
        self._stopped = True

    async def close(self) -> None:
        """Unsubscribe the inbox."""
        self._stopped = True
        sub = self._sub
        self._sub = None
        if sub is not None:
            await sub.unsubscribe()

    def reset(self) -> None:
        """Forget outstanding requests (after a reconnect the server may have dropped them)."""
        self._outstanding = 0

    @property
    def outstanding(self) -> int:
        """Jobs asked for and not delivered yet."""
        return self._outstanding

    def notify(self) -> None:
        """A job was published on this consumer's subject: ask for it (no_wait mode).

        The subscription hears of a publish before the stream has stored it, so a "none"
        answer right after is asked again a few times, a couple of milliseconds apart."""
        self.maybe_waiting = True
        self._recheck = NOTIFY_RECHECKS
        self.request_more()

    def refresh(self) -> None:
        """Assume jobs may be waiting again (a retry may have come due since)."""
        self.maybe_waiting = True

    def _wanted(self) -> int:
        """How many jobs to ask for now (0: enough are on the way)."""
        if self._stopped:
            return 0
        if self.no_wait and (not self.maybe_waiting or self._outstanding):
            return 0
        room = self._room()
        want = room - self._outstanding
        if want <= 0:
            return 0
        # Re-issue early only for a worthwhile batch, else let the current request run.
        if self._outstanding > 0 and want < max(1, room // 2):
            return 0
        return want

    def wants_more(self) -> bool:
        """True when :meth:`request_more` would send a request."""
        return self._wanted() > 0

    def request_more(self) -> None:
        """Ask for as many jobs as there is room for, unless enough are already on the way."""
        if self._sub is None or not self._conn.is_connected:
            return  # not started yet (no inbox to answer to), or reconnecting
        want = self._wanted()
        if want <= 0:
            return
        self._outstanding += want
        self._last_request = time.monotonic()
        if self.no_wait:
            body = json.dumps({"batch": want, "no_wait": True}).encode()
        else:
            body = json.dumps(
                {"batch": want, "expires": int(PULL_EXPIRES * 1e9), "idle_heartbeat": int(5e9)}
            ).encode()
        try:
            self._conn.post(self._next_subject, body, self._inbox)
        except Exception as exc:  # noqa: BLE001 - reconnecting; the watchdog re-requests
            self._outstanding -= want
            logger.debug("pull request for {} failed: {}", self.queue, exc)

    def stale(self) -> bool:
        """True when the outstanding requests should have expired by now (lost requests)."""
        return self._outstanding > 0 and time.monotonic() - self._last_request > PULL_EXPIRES + 2

    def _on_message(self, msg: Message) -> None:
        reply = msg.reply
        if reply and reply.startswith("$JS.ACK."):
            self._outstanding = max(0, self._outstanding - 1)
            self.idle.clear()
            self._on_job(self.queue, msg, self.priority)
            if self.no_wait and not self._outstanding and self._on_answer is not None:
                self._on_answer()  # a whole batch came: there may be more, and room below
            return
        headers = msg.headers or {}
        status = headers.get(_STATUS, "")
        if status == "100":  # idle heartbeat: the request is alive
            self._last_request = time.monotonic()
            return
        if status in ("404", "408"):
            pending = headers.get(_PENDING_MSGS)
            if pending is not None and pending.isdigit():
                self._outstanding = max(0, self._outstanding - int(pending))
            else:
                self._outstanding = 0
            self.idle.set()
            if self.no_wait:
                self._outstanding = 0
                if self._recheck > 0:  # notified: the job may not be stored yet
                    self._recheck -= 1
                    asyncio.get_running_loop().call_later(NOTIFY_RECHECK_DELAY, self.request_more)
                    return
                self.maybe_waiting = False  # nothing left now; notify/refresh ask again
                if self._on_answer is not None:
                    self._on_answer()
                return
        else:
            # 409 (leadership change, too many waiting pulls...), 503 (JetStream not ready,
            # e.g. just after a server restart) or anything unexpected: start over shortly
            logger.debug("pull on {} ended: {} {}", self.queue, status, headers.get("Description"))
            self._outstanding = 0
            delay = 0.25 if status == "503" else 0.1
            asyncio.get_running_loop().call_later(delay, self.request_more)
            return
        self.request_more()
