"""The one table of naq's public operations, from which its API surfaces are built.

Every operation is an async helper of :mod:`naq.api` (``naq.enqueue``, ...). Each also has

- a blocking ``<name>_sync`` twin in :mod:`naq.sync`, with the very same parameters;
- a :class:`naq.SyncClient` method ``<name>``: the same parameters minus ``nats_url`` (the
  client holds its connection; ``queue_name=None`` means the client's queue where the
  helper would use the default queue);
- when it is about one queue, a :class:`naq.Queue` method: the same parameters minus
  ``queue_name`` and ``nats_url``.

``tests/test_surfaces.py`` checks all of them against :data:`OPERATIONS` (names, parameters,
return types), and that every async helper of :mod:`naq.api` is listed here, so the surfaces
cannot drift apart: a new helper without its twin, client method or queue method fails there.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from . import api

#: Parameters that only the module-level helpers (and their ``_sync`` twins) take.
URL_PARAMETER = "nats_url"
QUEUE_PARAMETER = "queue_name"


@dataclass(frozen=True, slots=True)
class Operation:
    """One public operation: its async implementation and where else it must exist."""

    #: The module-level async helper (``naq.api.<name>``), the source of every signature.
    func: Callable[..., Coroutine[Any, Any, Any]]
    #: It takes ``queue_name`` (works on one queue, or on all when that is ``None``).
    takes_queue: bool
    #: Name of the :class:`naq.Queue` method doing it for one queue; ``None`` when it is
    #: not about a queue (workers, queues, a dead letter by id).
    queue_method: str | None

    @property
    def name(self) -> str:
        """The helper's name (``naq.<name>``, ``SyncClient.<name>``)."""
        return self.func.__name__

    @property
    def sync_name(self) -> str:
        """The name of the blocking twin (``naq.<name>_sync``)."""
        return f"{self.name}_sync"

    @property
    def doc(self) -> str:
        """The helper's docstring (its twins refer to it)."""
        return inspect.getdoc(self.func) or ""

    def signature(self) -> inspect.Signature:
        """The helper's signature (and so its ``_sync`` twin's)."""
        return inspect.signature(self.func)

    def client_signature(self) -> inspect.Signature:
        """The :class:`naq.SyncClient` method's signature (without ``self``)."""
        return _without(self.signature(), {URL_PARAMETER})

    def queue_signature(self) -> inspect.Signature:
        """The :class:`naq.Queue` method's signature (without ``self``)."""
        return _without(self.signature(), {URL_PARAMETER, QUEUE_PARAMETER})


def _without(signature: inspect.Signature, names: set[str]) -> inspect.Signature:
    kept = [p for name, p in signature.parameters.items() if name not in names]
    return signature.replace(parameters=kept)


#: Every public operation, in the order the docs list them.
OPERATIONS: tuple[Operation, ...] = (
    Operation(api.enqueue, takes_queue=True, queue_method="enqueue"),
    Operation(api.enqueue_many, takes_queue=True, queue_method="enqueue_many"),
    Operation(api.enqueue_at, takes_queue=True, queue_method="enqueue_at"),
    Operation(api.enqueue_in, takes_queue=True, queue_method="enqueue_in"),
    Operation(api.schedule, takes_queue=True, queue_method="schedule"),
    Operation(api.fetch_job_result, takes_queue=False, queue_method="fetch_job_result"),
    Operation(api.get_job_status, takes_queue=False, queue_method="get_job_status"),
    Operation(api.get_job_info, takes_queue=False, queue_method="get_job_info"),
    Operation(api.purge_queue, takes_queue=True, queue_method="purge"),
    Operation(api.pause_queue, takes_queue=True, queue_method="pause"),
    Operation(api.resume_queue, takes_queue=True, queue_method="resume"),
    Operation(api.list_workers, takes_queue=False, queue_method=None),
    Operation(api.list_queues, takes_queue=False, queue_method=None),
    Operation(api.list_dead_letters, takes_queue=True, queue_method="list_dead_letters"),
    Operation(api.requeue_dead_letter, takes_queue=False, queue_method=None),
    Operation(api.requeue_dead_letters, takes_queue=True, queue_method="requeue_dead_letters"),
    Operation(api.purge_dead_letters, takes_queue=True, queue_method="purge_dead_letters"),
    Operation(api.cancel_job, takes_queue=False, queue_method="cancel_job"),
    Operation(api.cancel_scheduled_job, takes_queue=False, queue_method="cancel_scheduled_job"),
    Operation(api.pause_scheduled_job, takes_queue=False, queue_method="pause_scheduled_job"),
    Operation(api.resume_scheduled_job, takes_queue=False, queue_method="resume_scheduled_job"),
    Operation(api.modify_scheduled_job, takes_queue=False, queue_method="modify_scheduled_job"),
    Operation(api.list_schedules, takes_queue=True, queue_method="list_schedules"),
    Operation(api.set_limit, takes_queue=False, queue_method=None),
    Operation(api.delete_limit, takes_queue=False, queue_method=None),
    Operation(api.list_limits, takes_queue=False, queue_method=None),
)

#: Public coroutine functions of :mod:`naq.api` that are plumbing, not operations, and so
#: have no twins: closing the helpers' connections, and the shared connection itself.
NOT_OPERATIONS: frozenset[str] = frozenset({"close", "shared_connection"})
