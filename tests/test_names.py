"""No queue name, job id, schedule id or worker name can reach another queue's subjects or
another job's keys: every name a checker of :mod:`naq.names` accepts is one plain subject
token where naq puts it, and every entry point refuses the rest at the call, with one short
line naming the parameter, and writes nothing on the server."""

from __future__ import annotations

import socket
import string
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import jobs

import naq
from conftest import raw_nats, wait_for
from naq import constants as c
from naq import names
from naq.events import EVENT_KINDS, event_subject
from naq.results import record_subject, record_subject_of_valid_id
from naq.scheduling.runs import run_job_id
from naq.transport import is_subject, is_token
from naq.worker.options import new_worker_id

NAME_CHARS = string.ascii_letters + string.digits + "_-"
#: Longest subject or key any of these names may build (far below the server's limits).
LONGEST_SUBJECT = 255


def valid_names(longest: int) -> st.SearchStrategy[str]:
    """Names a checker with maximum ``longest`` accepts (the longest ones included)."""
    return st.text(NAME_CHARS, min_size=1, max_size=longest) | st.builds(
        lambda char: char * longest, st.sampled_from(NAME_CHARS)
    )


def assert_tokens(subject: str, expected: list[str]) -> None:
    """``subject`` is exactly ``expected`` joined by dots: each name one token, no wildcard."""
    assert is_subject(subject) and len(subject) <= LONGEST_SUBJECT, subject
    assert subject.split(".") == expected
    assert "*" not in subject and ">" not in subject


# ---------------------------------------------------------------- accepted: one token each


@settings(max_examples=200, database=None)
@given(queue=valid_names(names.MAX_QUEUE_NAME), job_id=valid_names(names.MAX_JOB_ID))
def test_accepted_names_build_one_token_where_naq_puts_them(queue: str, job_id: str) -> None:
    assert names.check_queue_name(queue) == naq_settings_queue(queue) == queue
    assert names.check_job_id(job_id) == job_id and is_token(job_id)
    assert_tokens(c.queue_subject(queue), ["naq", "queue", queue])
    for priority in c.PRIORITY_LEVELS:
        assert_tokens(c.queue_subject(queue, priority), ["naq", "queue", queue, str(priority)])
        assert_tokens(c.due_subject(queue, priority), ["naq", "due", queue, str(priority)])
        assert is_token(c.consumer_name(queue, priority))
    assert is_token(c.consumer_name(queue))
    assert_tokens(c.dlq_subject(queue), ["naq", "dlq", queue])
    assert_tokens(c.due_subject(queue), ["naq", "due", queue])
    assert_tokens(c.schedule_subject(queue, job_id), ["naq", "sched", queue, job_id])
    for kind in EVENT_KINDS:
        assert_tokens(event_subject(queue, kind), ["naq", "events", queue, kind])
    key = ["$KV", c.RESULTS_BUCKET, job_id]
    assert_tokens(record_subject(job_id), key)
    assert_tokens(record_subject_of_valid_id(job_id), key)


def naq_settings_queue(queue: str) -> str:
    """The public spelling of the queue name check (kept working, same rule)."""
    from naq.settings import validate_queue_name

    return validate_queue_name(queue)


@settings(max_examples=100, database=None)
@given(
    schedule_id=valid_names(names.MAX_SCHEDULE_ID),
    run_at=st.floats(0, 4_102_444_800, allow_nan=False),
    worker_name=valid_names(names.MAX_WORKER_NAME),
)
def test_ids_naq_derives_from_accepted_names_are_job_ids(
    schedule_id: str, run_at: float, worker_name: str
) -> None:
    assert names.check_schedule_id(schedule_id) == schedule_id
    assert names.is_job_id(run_job_id(schedule_id, run_at))
    assert_tokens(c.schedule_subject("q", schedule_id), ["naq", "sched", "q", schedule_id])
    assert names.is_job_id(new_worker_id(worker_name))
    assert names.is_job_id(new_worker_id(None))


# ------------------------------------------------------------ refused: the rule, one line

CHECKERS: list[tuple[Callable[[object], str], str, int]] = [
    (names.check_queue_name, "queue name", names.MAX_QUEUE_NAME),
    (names.check_job_id, "job_id", names.MAX_JOB_ID),
    (names.check_schedule_id, "schedule_id", names.MAX_SCHEDULE_ID),
    (names.check_worker_name, "worker_name", names.MAX_WORKER_NAME),
]


def is_plain_name(value: object, longest: int) -> bool:
    """The rule, spelt out independently of :mod:`naq.names`."""
    return (
        isinstance(value, str)
        and 1 <= len(value) <= longest
        and all(char in NAME_CHARS for char in value)
    )


ANY_VALUE = (
    st.text(max_size=300)
    | st.text(NAME_CHARS + ".*> \t\r\n\x00\x7f\u00e9\u2028", max_size=140)
    | st.builds(lambda char, count: char * count, st.characters(), st.integers(1, 10_000))
    | st.integers()
    | st.binary(max_size=20)
    | st.none()
)


def assert_one_clear_line(message: str, what: str) -> None:
    assert what in message, message
    assert message.isascii() and message.isprintable(), repr(message)  # no CR/LF, NUL, ...
    assert len(message) <= 300, f"{len(message)} characters: {message[:100]}..."


@settings(max_examples=300, database=None)
@given(value=ANY_VALUE)
def test_checkers_accept_exactly_plain_names_and_say_why_in_one_line(value: object) -> None:
    for check, what, longest in CHECKERS:
        if is_plain_name(value, longest):
            assert check(value) == value
            continue
        with pytest.raises(naq.ConfigurationError) as refused:
            check(value)
        assert_one_clear_line(str(refused.value), f"invalid {what} ")
        assert f"1-{longest} ASCII letters, digits" in str(refused.value)
    if not is_plain_name(value, names.MAX_JOB_ID):
        with pytest.raises(naq.JobNotFoundError) as missing:
            names.lookup_job_id(value)
        assert_one_clear_line(str(missing.value), "not a valid job id")


# ------------------------------------------------- refused at every entry point, nothing written

#: What each kind of hostile name tries: another token, a wildcard, a second protocol line...
HOSTILE: list[Any] = [
    "a.b",
    "naq.queue.victim",
    "*",
    ">",
    "victim*",
    "victim>",
    "a b",
    "\t",
    "a\r\nPUB naq.queue.victim 2\r\nhi",
    "a\x00b",
    "a\x7f",
    "caf\u00e9",
    "\u202eeulav",
    "x" * 10_000,
    "",
    5,
    b"victim",
]
HOSTILE_NAMES = st.sampled_from(HOSTILE) | ANY_VALUE.filter(
    lambda value: not is_plain_name(value, names.MAX_JOB_ID) and value is not None
)

Call = Callable[[], Awaitable[Any]]


def queue_name_calls(url: str, name: Any) -> list[tuple[str, Call]]:
    """Every entry point taking a queue name, called with ``name``."""

    async def construct(make: Callable[[], Any]) -> None:
        make()

    return [
        ("enqueue", lambda: naq.enqueue(jobs.add, 1, 2, queue_name=name, nats_url=url)),
        (
            "enqueue_many",
            lambda: naq.enqueue_many([(jobs.add, (1, 2))], queue_name=name, nats_url=url),
        ),
        ("enqueue_in", lambda: naq.enqueue_in(60, jobs.add, 1, 2, queue_name=name, nats_url=url)),
        ("schedule", lambda: naq.schedule(jobs.add, interval=60, queue_name=name, nats_url=url)),
        ("purge_queue", lambda: naq.purge_queue(name, nats_url=url)),
        ("pause_queue", lambda: naq.pause_queue(name, nats_url=url)),
        ("resume_queue", lambda: naq.resume_queue(name, nats_url=url)),
        ("list_dead_letters", lambda: naq.list_dead_letters(queue_name=name, nats_url=url)),
        ("purge_dead_letters", lambda: naq.purge_dead_letters(queue_name=name, nats_url=url)),
        ("requeue_dead_letters", lambda: naq.requeue_dead_letters(queue_name=name, nats_url=url)),
        ("Queue", lambda: construct(lambda: naq.Queue(name, nats_url=url))),
        ("Worker", lambda: construct(lambda: naq.Worker([name], nats_url=url))),
        ("SyncClient", lambda: construct(lambda: naq.SyncClient(url, queue_name=name))),
    ]


def job_id_calls(url: str, name: Any) -> list[tuple[str, Call]]:
    """Every entry point creating a job or schedule under ``name`` (ConfigurationError)."""

    async def construct(make: Callable[[], Any]) -> None:
        make()

    return [
        ("enqueue job_id", lambda: naq.enqueue(jobs.add, 1, 2, job_id=name, nats_url=url)),
        ("enqueue_in job_id", lambda: naq.enqueue_in(60, jobs.add, 1, job_id=name, nats_url=url)),
        ("depends_on", lambda: naq.enqueue(jobs.add, 1, 2, depends_on=[name], nats_url=url)),
        (
            "schedule_id",
            lambda: naq.schedule(jobs.add, interval=60, schedule_id=name, nats_url=url),
        ),
        (
            "worker_name",
            lambda: construct(lambda: naq.Worker(["q"], nats_url=url, worker_name=name)),
        ),
        ("scheduler_id", lambda: construct(lambda: naq.Scheduler(nats_url=url, scheduler_id=name))),
    ]


def lookup_calls(url: str, name: Any) -> list[tuple[str, Call]]:
    """Every entry point looking a job or schedule up by ``name`` (JobNotFoundError)."""
    return [
        ("get_job_info", lambda: naq.get_job_info(name, nats_url=url)),
        ("get_job_status", lambda: naq.get_job_status(name, nats_url=url)),
        ("fetch_job_result", lambda: naq.fetch_job_result(name, nats_url=url)),
        ("fetch_job_result timeout", lambda: naq.fetch_job_result(name, timeout=1, nats_url=url)),
        ("cancel_job", lambda: naq.cancel_job(name, nats_url=url)),
        ("cancel_scheduled_job", lambda: naq.cancel_scheduled_job(name, nats_url=url)),
        ("pause_scheduled_job", lambda: naq.pause_scheduled_job(name, nats_url=url)),
        ("resume_scheduled_job", lambda: naq.resume_scheduled_job(name, nats_url=url)),
        ("modify_scheduled_job", lambda: naq.modify_scheduled_job(name, interval=5, nats_url=url)),
    ]


async def server_state(url: str) -> dict[str, Any]:
    """Every stream's message count and consumers, and the account's totals."""
    async with raw_nats(url) as nc:
        js = nc.jetstream()
        account = await js.account_info()
        state: dict[str, Any] = {"streams": account.streams, "consumers": account.consumers}
        for info in await js.streams_info():
            name = info.config.name
            state[name] = (info.state.messages, info.state.last_seq, info.state.consumer_count)
        return state


@pytest.fixture
async def seeded(nats_url: str) -> str:
    """The server with naq's streams and buckets made (so nothing new can hide as "none")."""
    await naq.enqueue(jobs.add, 0, 0, queue_name="names-seed", nats_url=nats_url)
    await naq.schedule(jobs.add, interval=3600, queue_name="names-seed", nats_url=nats_url)
    await naq.pause_queue("names-seed", nats_url=nats_url)

    async def settled() -> bool:  # the jobs stream's source consumer comes a moment later
        return bool((await server_state(nats_url))[c.SCHEDULES_STREAM][2] >= 1)

    await wait_for(settled)
    return nats_url


async def refusal(label: str, call: Call, error: type[Exception], name: object) -> str:
    """The message of the ``error`` ``call`` raises; fails the test naming the entry point
    if it accepts ``name`` or raises something else."""
    try:
        await call()
    except error as exc:
        message = str(exc)
        assert_one_clear_line(
            message, "not a valid" if error is naq.JobNotFoundError else "invalid"
        )
        return message
    except Exception as exc:  # noqa: BLE001 - reported with the entry point's name
        pytest.fail(f"{label} raised {exc!r} for {names.shown(name)}, not {error.__name__}")
    pytest.fail(f"{label} accepted {names.shown(name)}")


async def refused_everywhere(url: str, name: object) -> None:
    """Every entry point refuses ``name`` at the call."""
    for label, call in queue_name_calls(url, name) + job_id_calls(url, name):
        message = await refusal(label, call, naq.ConfigurationError, name)
        assert "ASCII letters, digits" in message, (label, message)
    for label, call in lookup_calls(url, name):
        await refusal(label, call, naq.JobNotFoundError, name)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=HOSTILE_NAMES)
async def test_every_entry_point_refuses_a_hostile_name_and_writes_nothing(
    seeded: str, name: Any
) -> None:
    before = await server_state(seeded)
    await refused_everywhere(seeded, name)
    assert await server_state(seeded) == before, "a refused call wrote something"


async def test_hostile_names_are_refused_whole_at_every_entry_point(seeded: str) -> None:
    """The fixed hostile list, each name at each entry point (hypothesis samples them)."""
    before = await server_state(seeded)
    for name in HOSTILE:
        await refused_everywhere(seeded, name)
    assert await server_state(seeded) == before, "a refused call wrote something"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_queue_lookups_refuse_an_invalid_id_before_connecting() -> None:
    """The id is checked at the call: no server is needed to learn it can name no job."""
    queue = naq.Queue("q", nats_url=f"nats://127.0.0.1:{closed_port()}")
    for name in ("a.b", "*", "x" * 10_000):
        with pytest.raises(naq.JobNotFoundError, match="not a valid job id"):
            await queue.get_job_info(name)
        with pytest.raises(naq.JobNotFoundError, match="not a valid job id"):
            await queue.fetch_job_result(name, timeout=1)
        with pytest.raises(naq.JobNotFoundError, match="not a valid job id"):
            await queue.cancel_job(name)
    await queue.close()


@pytest.mark.parametrize("name", ["", 5, b"w", "a.b", "w" * (names.MAX_WORKER_NAME + 1)])
def test_worker_and_scheduler_names_are_checked_at_the_call(nats_url: str, name: object) -> None:
    """A name that starts a worker's or scheduler's id: refused, not silently replaced."""
    with pytest.raises(naq.ConfigurationError, match="invalid worker_name"):
        naq.Worker(["q"], nats_url=nats_url, worker_name=name)  # type: ignore[arg-type]
    with pytest.raises(naq.ConfigurationError, match="invalid scheduler_id"):
        naq.Scheduler(nats_url, scheduler_id=name)  # type: ignore[arg-type]


async def test_limit_names_are_checked_at_the_call(seeded: str) -> None:
    """Limit names have a rule of their own (``:`` allowed, kept as ``=`` in keys; ``*`` ends
    a family): hostile ones are refused in one short line, nothing written."""
    before = await server_state(seeded)
    for name in HOSTILE:

        async def define(name: Any = name) -> None:
            await naq.set_limit(name, concurrency=1, nats_url=seeded)

        async def take(name: Any = name) -> None:
            await naq.enqueue(jobs.add, 1, 2, limits=[name], nats_url=seeded)

        if name != "victim*":  # a family: a valid limit definition
            await refusal("set_limit", define, naq.ConfigurationError, name)
        await refusal("enqueue limits", take, naq.ConfigurationError, name)
    assert await server_state(seeded) == before, "a refused call wrote something"
