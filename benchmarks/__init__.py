"""naq benchmark suite: naq and raw nats-py doing the same work on one embedded server.

Run with ``make bench`` (or ``python -m benchmarks.run [--quick]``) from the repository root.
"""
