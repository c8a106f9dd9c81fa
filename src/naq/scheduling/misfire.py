"""Misfire policy: what a recurring schedule does when its run time has passed.

After downtime a schedule fires **at most once** for the runs it missed (``"once"``, the
default) or not at all (``"skip"``); never a burst. A run up to ``grace`` seconds late is not
a misfire: it fires normally under both policies."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError
from .recurrence import Recurrence

MISFIRE_POLICIES = ("once", "skip")
#: A run at most this many seconds late is on time (the Scheduler's default).
DEFAULT_GRACE = 1.0


def check_policy(policy: object) -> str:
    """Validate a misfire policy name."""
    if policy not in MISFIRE_POLICIES:
        raise ConfigurationError(f"misfire must be 'once' or 'skip', got {policy!r}")
    return str(policy)


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision for a schedule that is due: which run to enqueue now, and the next one."""

    fire_at: float | None  # scheduled time of the run to enqueue now; None = none
    next_run: float  # next run time, strictly after now
    missed: bool  # at least one run was not enqueued on time (skipped or caught up late)


def plan(
    rule: Recurrence,
    due: float,
    now: float,
    policy: str,
    grace: float,
    successor: float | None = None,
) -> Plan:
    """Decide what to fire for a schedule whose next run ``due`` is ``<= now``.

    ``latest`` is the newest run time ``<= now``. It fires if it is on time (within ``grace``)
    or if the policy is ``"once"`` (the single catch-up run); every older missed run is
    dropped. Cost is O(1) in the number of missed runs. ``successor`` is
    ``rule.next_after(due)`` when the caller computed it ahead of time.
    """
    if now < due:
        return Plan(None, due, False)
    nxt = rule.next_after(due) if successor is None else successor
    latest = due if nxt > now else max(due, rule.last_at_or_before(now))
    if latest != due:
        nxt = rule.next_after(latest)
    late = now - latest > grace
    fire = latest if (not late or policy == "once") else None
    return Plan(fire, nxt, late or latest != due)
