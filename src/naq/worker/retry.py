"""Retry policy: given a failed attempt, retry after a delay or give up."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import JobEnvelope


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``retry`` with ``delay`` seconds, or give up with ``reason``."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def retry_delay(envelope: JobEnvelope, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` is 1-based)."""
    delay = envelope.retry_delay
    if isinstance(delay, list):
        if not delay:
            return 0.0
        return float(delay[min(attempt - 1, len(delay) - 1)])
    if envelope.retry_strategy == "exponential":
        return float(delay) * float(2 ** (attempt - 1))
    return float(delay)


def exception_paths(exc: BaseException) -> set[str]:
    """``module:qualname`` of the exception's class and all its bases."""
    return {f"{k.__module__}:{k.__qualname__}" for k in type(exc).__mro__}


def decide(envelope: JobEnvelope, attempt: int, exc: BaseException) -> RetryDecision:
    """Whether a job that raised ``exc`` on attempt ``attempt`` runs again, and when."""
    paths = exception_paths(exc)
    if envelope.ignore_on and paths.intersection(envelope.ignore_on):
        return RetryDecision(False, reason="exception matches ignore_on")
    if envelope.retry_on and not paths.intersection(envelope.retry_on):
        return RetryDecision(False, reason="exception does not match retry_on")
    if attempt > envelope.max_retries:
        return RetryDecision(False, reason=f"no retries left ({envelope.max_retries} allowed)")
    return RetryDecision(True, delay=retry_delay(envelope, attempt))
