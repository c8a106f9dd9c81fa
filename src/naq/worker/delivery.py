"""A message the worker holds, and the run of its job.

A delivery moves through explicit states::

    HELD ──► RUNNING ──► SETTLED          (acked, nak'ed or termed: exactly once)
      │         │
      └─────────┴──────► SETTLED          (dead letter, hand-back at shutdown, ...)

Its lease is renewed (``in_progress``) until it is settled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..context import JobContext
from ..hooks import JobRun
from ..limiting import Permit
from ..models import AttemptRecord, JobEnvelope
from ..transport import Message, reply_to


class State(Enum):
    """Where a held message is."""

    HELD = "held"  # received; waiting for a slot or being decided
    RUNNING = "running"  # its function runs (or its outcome is being stored)
    SETTLED = "settled"  # answered: nothing more is sent for it


@dataclass(slots=True)
class Run:
    """One run of a job's function: what its ``running`` and outcome records say."""

    envelope: JobEnvelope
    attempt: int
    history: list[AttemptRecord]  # earlier attempts, from the job's record
    ctx: JobContext
    started: float = field(default_factory=time.time)
    hook: JobRun | None = None  # what hooks see of it, when any hook wants it


@dataclass(slots=True)
class Delivery:
    """A message this worker holds: its lease is renewed until it is settled."""

    msg: Message
    queue: str  # the queue it was pulled from (a valid name, unlike what its bytes say)
    seq: int  # stream sequence: the message's identity across redeliveries
    delivered: int  # how many times the server delivered it (this one included)
    priority: int = 0  # the priority of the subject it came from (0 to 9)
    received_at: float = field(default_factory=time.monotonic)
    state: State = State.HELD
    job_id: str | None = None
    task: asyncio.Task[Any] | None = None  # naq's own task for it (task path, outcome)
    job_task: asyncio.Task[Any] | None = None  # the task running an async job's function
    run: Run | None = None  # the run in progress, once the function is started
    running_write: asyncio.Task[None] | None = None
    suspect: bool = False  # redelivered after its worker died: runs alone
    suspect_runs: int = 0  # times it was started alone after such a redelivery
    handed_back: int = 0  # from the job record: earlier deliveries returned at shutdown
    limit_waits: int = 0  # from the job record: deliveries sent back for a full limit
    permit: Permit | None = None  # the shared limits it holds while it runs
    slot_handed: bool = False  # the executor now owns the slot taken for this delivery
    cancel_requested: bool = False  # cancel_job was asked while its job ran

    def request_cancel(self) -> None:
        """Stop the job: an async job's task is cancelled, a sync job sees
        ``current_job().cancelled``; either way it is recorded ``cancelled``."""
        if self.settled or self.run is None:
            return
        self.cancel_requested = True
        self.run.ctx.request_cancel()
        if self.job_task is not None:
            self.job_task.cancel()

    @property
    def settled(self) -> bool:
        """True once the message was answered."""
        return self.state is State.SETTLED

    def settle(self, how: bytes) -> None:
        """Answer the message (``ACK``, ``TERM`` or a ``nak_body``), once; later calls do
        nothing. Raises if the connection cannot take the answer."""
        if self.state is State.SETTLED:
            return
        self.state = State.SETTLED
        reply_to(self.msg, how)

    def dedupe_key(self) -> str:
        """Identifies this delivery: a dead letter published for it twice is stored once."""
        return f"{self.seq}-{self.delivered}"
