"""The worker: pull loop, executor, leases, retries, dead letters, status heartbeat."""

from .core import Worker

__all__ = ["Worker"]
