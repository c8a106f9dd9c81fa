"""The scheduler's leader lock: one key in the ``naq_scheduler`` bucket with a per-key TTL.

Acquire = create the key (fails while someone holds it); renew = compare-and-set on our
revision, re-arming the TTL; release = compare-and-set delete. The holder counts itself
leader only until ``sent_at + ttl - margin`` of its last successful write (its own clock,
measured from *before* the request left), which is never later than the server's expiry,
so a stalled leader stops acting before anyone else can take over."""

from __future__ import annotations

import json
import math
import os
import socket
import time

from loguru import logger

from .. import constants as c
from ..errors import NaqConnectionError, WriteConflictError
from ..transport import Connection, kv


class LeaderLock:
    """A TTL'd, compare-and-set lock held by ``owner``."""

    def __init__(
        self,
        conn: Connection,
        owner: str,
        ttl: float,
        *,
        bucket: str = c.SCHEDULER_BUCKET,
        key: str = c.SCHEDULER_LOCK_KEY,
    ) -> None:
        self.conn = conn
        self.owner = owner
        self.ttl = float(ttl)
        self.bucket = bucket
        self.key = key
        self.margin = min(0.5, self.ttl / 5)
        self.revision: int | None = None
        self._valid_until = 0.0  # time.monotonic()

    @property
    def held(self) -> bool:
        """True while this process may act as leader."""
        return self.revision is not None and time.monotonic() < self._valid_until

    @property
    def server_ttl(self) -> int:
        """TTL sent to the server: whole seconds, never shorter than ``ttl``."""
        return max(1, math.ceil(self.ttl))

    def _value(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "at": time.time(),
            }
        ).encode()

    async def _current(self) -> tuple[int, str | None]:
        """(last revision of the key, its owner or None if deleted/absent)."""
        found = await kv.last_message(self.conn, self.bucket, self.key)
        if found is None:
            return 0, None
        seq, data, deleted = found
        if deleted:
            return seq, None
        try:
            owner = json.loads(data).get("owner")
        except (ValueError, AttributeError):
            owner = None
        return seq, owner if isinstance(owner, str) else "?"

    async def acquire(self) -> bool:
        """Try to take the lock once; True if this process holds it now."""
        if self.held:
            return True
        last, owner = await self._current()
        if owner is not None and owner != self.owner:
            return False
        sent = time.monotonic()
        try:
            # free: create over the delete marker (or nothing); ours (after a reconnect):
            # take it back over our own revision
            self.revision = await kv.put(
                self.conn, self.bucket, self.key, self._value(), last=last, ttl=self.server_ttl
            )
        except WriteConflictError:
            return False
        self._valid_until = sent + self.ttl - self.margin
        return True

    async def renew(self) -> bool:
        """Extend the lock; False once it is lost (taken over, or expired while unreachable)."""
        if self.revision is None:
            return False
        sent = time.monotonic()
        try:
            self.revision = await kv.put(
                self.conn,
                self.bucket,
                self.key,
                self._value(),
                last=self.revision,
                ttl=self.server_ttl,
            )
        except WriteConflictError:
            logger.warning("scheduler {} lost the leader lock (taken over)", self.owner)
            self.revision = None
            return False
        except (NaqConnectionError, OSError, TimeoutError) as exc:
            logger.debug("leader lock renewal failed: {}", exc)
            return self.held
        self._valid_until = sent + self.ttl - self.margin
        return True

    async def release(self) -> None:
        """Give the lock up (only if it is still ours), so a follower takes over at once."""
        revision, self.revision = self.revision, None
        self._valid_until = 0.0
        if revision is None:
            return
        try:
            await kv.delete(self.conn, self.bucket, self.key, revision)
        except (NaqConnectionError, OSError) as exc:
            logger.debug("leader lock release skipped: {}", exc)
