"""Job functions the integration tests enqueue (importable by workers as ``tests.jobs:<name>``).

The worker runs these because this module lives under its working directory (the project
root) and not in site-packages.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import naq


def add(a: Any, b: Any) -> Any:
    return a + b


async def async_add(a: Any, b: Any) -> Any:
    await asyncio.sleep(0)
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


def echo(value: Any) -> Any:
    return value


def echo_kwargs(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def sleep_sync(seconds: float) -> tuple[float, float, str]:
    """Sleep in the job's thread; returns (start, end, thread name)."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic(), threading.current_thread().name


async def sleep_async(seconds: float) -> tuple[float, float, str]:
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return start, time.monotonic(), threading.current_thread().name


def thread_name() -> str:
    return threading.current_thread().name


async def async_thread_name() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


async def async_return_now(value: Any) -> Any:
    """An async job that finishes without ever suspending."""
    return value


async def async_fail_now(message: str) -> None:
    """An async job that raises without ever suspending."""
    raise ValueError(message)


def count_call(path: str) -> int:
    """Append a line to ``path``; returns how many times it was called so far."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("ran\n")
    return len(Path(path).read_text(encoding="utf-8").splitlines())


def touch(path: str) -> str:
    Path(path).write_text("ran", encoding="utf-8")
    return path


def context_info() -> dict[str, Any]:
    ctx = naq.current_job()
    return {"job_id": ctx.job_id, "attempt": ctx.attempt, "queue_name": ctx.queue_name}


async def async_context_info() -> dict[str, Any]:
    await asyncio.sleep(0)
    ctx = naq.current_job()
    return {"job_id": ctx.job_id, "attempt": ctx.attempt, "queue_name": ctx.queue_name}


def make_rich() -> dict[str, Any]:
    """A value using every type the JSON codec must carry faithfully."""
    return {
        "aware": datetime(
            2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
        ),
        "utc": datetime(2024, 1, 1, tzinfo=UTC),
        "zoned": datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
        "naive": datetime(1999, 12, 31, 23, 59, 59),
        "date": date(2020, 2, 29),
        "time": dtime(1, 2, 3, 4),
        "delta": timedelta(days=-1, seconds=5, microseconds=7),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "decimal": Decimal("1.10"),
        "big_decimal": Decimal("-12345678901234567890.000000001"),
        "bytes": b"\x00\xff raw \x80",
        "tuple": (1, "a", (2.5, None), []),
        "set": {1, 2, 3},
        "frozenset": frozenset({"x", "y"}),
        "empty_tuple": (),
        "nested": [{"d": date(2000, 1, 1), "s": {(1, 2), (3, 4)}}, [b"", Decimal("0")]],
        "int_keys": {1: "one", 2: "two"},
        "tuple_keys": {(1, 2): "pair"},
        "tagged_lookalike": {"__naq__": "datetime", "v": "not a real tag"},
        "big_int": 2**63 - 1,
        "unicode": "héllo ✓ \u0000",
    }


def rich_result() -> dict[str, Any]:
    return make_rich()


class Opaque:
    """A custom class instance: cannot travel as JSON."""

    def __init__(self, value: int = 1) -> None:
        self.value = value


def unserializable_result() -> Opaque:
    return Opaque()


class Point:
    """A custom class for the pickle serializer tests."""

    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


def describe_point(point: Point) -> list[Any]:
    return [f"{type(point).__module__}.{type(point).__qualname__}", point.x, point.y]


def touch_with_point(path: str, point: Point) -> str:
    Path(path).write_text(f"{point.x},{point.y}", encoding="utf-8")
    return path


def huge_progress(size: int) -> str:
    """Reports progress with a message of ``size`` characters, then returns."""
    naq.current_job().set_progress(0.5, "p" * size)
    time.sleep(0.3)  # long enough for the progress write to land
    return "done"
