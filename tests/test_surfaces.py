"""naq's API surfaces (async helpers, ``*_sync`` twins, ``SyncClient`` and ``Queue`` methods)
held to the one table in :mod:`naq.surface`, plus the dead-letter calls they gained."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests import jobs

import naq
import naq.api
import naq.sync
from conftest import WAIT
from naq.surface import NOT_OPERATIONS, OPERATIONS, QUEUE_PARAMETER, Operation


@pytest.fixture(autouse=True)
def _close_sync_connections() -> Iterator[None]:
    """The sync layer's loop outlives the module's server: close its cached connections."""
    yield
    naq.run_sync(naq.close())


def _without_self(signature: inspect.Signature) -> inspect.Signature:
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def _same(found: inspect.Signature, wanted: inspect.Signature, what: str) -> None:
    """Parameters (names, kinds, defaults, annotations) and return annotation must match."""
    assert str(found) == str(wanted), f"{what}{found} differs from its table entry {wanted}"
    assert found == wanted, f"{what}: same text, different parameters"


@pytest.fixture(params=OPERATIONS, ids=lambda op: op.name)
def operation(request: pytest.FixtureRequest) -> Operation:
    return request.param  # type: ignore[no-any-return]


def test_every_async_helper_is_in_the_table() -> None:
    helpers = {
        name
        for name, func in vars(naq.api).items()
        if not name.startswith("_")
        and inspect.iscoroutinefunction(func)
        and func.__module__ == naq.api.__name__
    }
    listed = [op.name for op in OPERATIONS]
    assert len(listed) == len(set(listed)), "an operation is listed twice"
    assert helpers >= NOT_OPERATIONS, "NOT_OPERATIONS names something naq.api does not have"
    missing = helpers - set(listed) - NOT_OPERATIONS
    assert not missing, f"async helpers missing from naq.surface.OPERATIONS: {sorted(missing)}"
    assert set(listed) <= helpers


def test_the_async_helper_is_exported(operation: Operation) -> None:
    assert getattr(naq, operation.name) is operation.func
    assert operation.name in naq.__all__
    assert operation.doc, f"naq.{operation.name} has no docstring"


def test_the_table_says_which_take_a_queue(operation: Operation) -> None:
    takes_queue = QUEUE_PARAMETER in operation.signature().parameters
    assert operation.takes_queue == takes_queue
    if operation.takes_queue:  # about one queue: the Queue object must offer it too
        assert operation.queue_method is not None, f"{operation.name} needs a Queue method"
    assert "nats_url" in operation.signature().parameters  # every helper takes nats_url=


def test_the_sync_twin_has_the_same_parameters(operation: Operation) -> None:
    twin = getattr(naq.sync, operation.sync_name, None)
    assert twin is not None, f"naq.sync has no {operation.sync_name}"
    assert getattr(naq, operation.sync_name, None) is twin
    assert operation.sync_name in naq.__all__
    assert callable(twin)
    assert not inspect.iscoroutinefunction(twin)
    assert twin.__name__ == operation.sync_name
    assert twin.__doc__ and f"naq.{operation.name}" in twin.__doc__
    _same(inspect.signature(twin), operation.signature(), f"naq.{operation.sync_name}")


def test_the_sync_client_method_has_the_same_parameters(operation: Operation) -> None:
    method = getattr(naq.SyncClient, operation.name, None)
    assert method is not None, f"naq.SyncClient has no {operation.name} method"
    assert method.__doc__, f"SyncClient.{operation.name} has no docstring"
    _same(
        _without_self(inspect.signature(method)),
        operation.client_signature(),
        f"SyncClient.{operation.name}",
    )


@pytest.mark.parametrize(
    "operation", [op for op in OPERATIONS if op.queue_method], ids=lambda op: op.name
)
def test_the_queue_method_has_the_same_parameters(operation: Operation) -> None:
    assert operation.queue_method is not None
    method = getattr(naq.Queue, operation.queue_method, None)
    assert method is not None, f"naq.Queue has no {operation.queue_method} method"
    assert inspect.iscoroutinefunction(method)
    assert method.__doc__, f"Queue.{operation.queue_method} has no docstring"
    _same(
        _without_self(inspect.signature(method)),
        operation.queue_signature(),
        f"Queue.{operation.queue_method}",
    )


def test_the_comparison_notices_a_difference() -> None:
    """The check above is not vacuous: one changed default or one extra keyword fails it."""
    op = next(op for op in OPERATIONS if op.name == "fetch_job_result")

    def changed(job_id: str, timeout: float | None = 1.0) -> Any: ...

    def extra(job_id: str, timeout: float | None = None, *, other: int = 0) -> Any: ...

    for func in (changed, extra):
        with pytest.raises(AssertionError):
            _same(inspect.signature(func), op.client_signature(), "changed")


# -------------------------------------------------------------- what the surfaces gained


def test_dead_letters_from_sync_client_twins_and_queue(
    nats_url: str, queue: str, worker_thread: Any
) -> None:
    other = f"{queue}-other"
    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        failing = client.enqueue(jobs.fail, "to the dlq")
        elsewhere = client.enqueue(jobs.fail, "elsewhere", queue_name=other)
        with worker_thread([queue, other], nats_url):
            for job in (failing, elsewhere):
                with pytest.raises(naq.JobExecutionError):
                    client.fetch_job_result(job.job_id, timeout=WAIT)
            mine = client.list_dead_letters(queue)
            assert [entry.job_id for entry in mine] == [failing.job_id]
            assert {e.job_id for e in client.list_dead_letters()} >= {
                failing.job_id,
                elsewhere.job_id,
            }
            assert naq.list_dead_letters_sync(queue, nats_url=nats_url) == mine

            # requeued under its id: it runs (and fails) again and is dead-lettered again
            assert client.requeue_dead_letter(mine[0].id) == failing.job_id
            again = _wait_for_entry(client, queue, newer_than=mine[0].id)
            assert again.job_id == failing.job_id

        assert client.purge_dead_letters(queue) == 1
        assert [e.job_id for e in client.list_dead_letters(other)] == [elsewhere.job_id]

        async def through_queue() -> tuple[list[Any], int]:
            async with naq.Queue(other, nats_url=nats_url) as q:
                return await q.list_dead_letters(limit=5), await q.purge_dead_letters()

        listed, purged = naq.run_sync(through_queue())
        assert [e.job_id for e in listed] == [elsewhere.job_id]
        assert purged == 1
        assert client.list_dead_letters(other) == []


def _wait_for_entry(client: naq.SyncClient, queue: str, newer_than: int) -> Any:
    """The queue's only dead letter, once it is one stored after entry ``newer_than``."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        entries = client.list_dead_letters(queue)
        if entries and entries[0].id > newer_than:
            assert len(entries) == 1
            return entries[0]
        time.sleep(0.05)
    raise AssertionError(f"no new dead letter for {queue} within {WAIT} s")


def test_an_empty_queue_name_never_means_every_queue(nats_url: str, queue: str) -> None:
    """``""`` is a bad queue name, refused; before, the dead-letter calls read it as "all"."""
    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        client.enqueue(jobs.add, 1, 1)
        for call in (
            lambda: naq.purge_dead_letters_sync("", nats_url=nats_url),
            lambda: naq.list_dead_letters_sync("", nats_url=nats_url),
            lambda: client.purge_dead_letters(""),
            lambda: client.list_dead_letters(""),
        ):
            with pytest.raises(naq.ConfigurationError, match="invalid queue name ''"):
                call()
        assert client.purge_queue() == 1


def test_schedules_through_the_client_the_twins_and_the_queue(nats_url: str, queue: str) -> None:
    with naq.SyncClient(nats_url=nats_url, queue_name=queue) as client:
        by_client = client.schedule(jobs.add, 1, 2, cron="0 3 * * *", timezone="UTC", repeat=2)
        by_twin = naq.schedule_sync(
            jobs.add,
            3,
            4,
            interval=3600,
            schedule_id=f"{queue}-hourly",
            queue_name=queue,
            nats_url=nats_url,
        )

        async def by_queue() -> Any:
            async with naq.Queue(queue, nats_url=nats_url) as q:
                return await q.schedule(jobs.add, 5, 6, interval=60.0, misfire="skip")

        by_q = naq.run_sync(by_queue())
        assert (by_client.cron, by_client.repeat, by_client.queue_name) == ("0 3 * * *", 2, queue)
        assert by_twin.schedule_id == f"{queue}-hourly"
        assert by_q.queue_name == queue
        ids = {s.schedule_id for s in client.list_schedules(queue_name=queue)}
        assert ids == {by_client.schedule_id, by_twin.schedule_id, by_q.schedule_id}
        for schedule_id in ids:
            assert client.cancel_scheduled_job(schedule_id)
        assert naq.list_schedules_sync(queue_name=queue, nats_url=nats_url) == []


def test_enqueue_sync_takes_queue_name_and_nats_url_as_keywords(nats_url: str, queue: str) -> None:
    parameters = inspect.signature(naq.enqueue_sync).parameters
    for name in ("queue_name", "nats_url"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default is None
    job = naq.enqueue_sync(jobs.add, 1, 2, queue_name=queue, nats_url=nats_url)
    assert job.queue_name == queue
    assert "queue_name" not in job.kwargs and "nats_url" not in job.kwargs
    assert naq.purge_queue_sync(queue, nats_url=nats_url) == 1
