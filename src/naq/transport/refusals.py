"""Failing a request or acknowledged publish at once when the server refuses it for lack of
permission, instead of letting it wait for its timeout.

NATS drops a publish the user may not make and only says so in an asynchronous
``-ERR 'Permissions Violation for Publish to "<subject>"'``: the request or write behind it
would wait its whole timeout and then report a timeout that says nothing of the cause.
:class:`InFlight` remembers the subjects of the most recent operations still waiting for an
answer, and :meth:`InFlight.refuse` fails those on the refused subject with a
:class:`~naq.errors.ServerError` naming the permission problem.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Any

from ..errors import ServerError

#: Operations remembered (older ones, if still waiting, end with their timeout as before).
TRACKED = 4096
# nats-py lower-cases the server's error text before handing it on.
_PUBLISH_REFUSED = re.compile(r'permissions violation for publish to "([^"]*)"')


def refused_subject(error_text: str) -> str | None:
    """The subject of a "permissions violation for publish" error (lower case), if it is one."""
    found = _PUBLISH_REFUSED.search(error_text.lower())
    return found.group(1) if found else None


#: The ``code`` of a :class:`ServerError` for a permissions violation: permanent, never
#: retried (a worker whose user lacks a permission stops at once, naming it).
PERMISSION_DENIED = 403


def permission_denied(subject: str) -> ServerError:
    """The error of an operation the server refused because the user may not publish there."""
    return ServerError(
        f"NATS refused to let this user publish to {subject[:200]} (permissions violation); "
        "check the user's publish permissions",
        code=PERMISSION_DENIED,
    )


class InFlight:
    """The subjects of recent operations still waiting for an answer, to fail them when the
    server refuses their subject (one instance per connection)."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: deque[tuple[str, asyncio.Future[Any]]] = deque(maxlen=TRACKED)

    def track(self, subject: str, future: asyncio.Future[Any]) -> None:
        """Remember that ``future`` waits for the answer to a message sent to ``subject``
        (answered ones are dropped from the old end, so finished futures are not kept)."""
        pending = self._pending
        while pending and pending[0][1].done():
            pending.popleft()
        pending.append((subject, future))

    def refuse(self, error_text: str) -> int:
        """Fail the waiting operations on the subject a permissions violation names; returns
        how many were failed (0 for any other error)."""
        denied = refused_subject(error_text)
        if denied is None:
            return 0
        failed = 0
        kept: deque[tuple[str, asyncio.Future[Any]]] = deque(maxlen=TRACKED)
        for subject, future in self._pending:
            if future.done():
                continue
            if subject.lower() == denied:
                future.set_exception(permission_denied(subject))
                failed += 1
            else:
                kept.append((subject, future))
        self._pending = kept
        return failed
