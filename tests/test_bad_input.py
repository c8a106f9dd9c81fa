"""Bad input is refused loudly at the call (storing nothing), and bad messages on the wire
never stop a worker: they end up in the dead-letter stream with their reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests import jobs

import naq
from conftest import WAIT, dlq_messages, raw_nats, stream_count
from naq import JobStatus


async def _stored(nats_url: str) -> tuple[int, int]:
    return (
        await stream_count(nats_url, "NAQ_JOBS") + await stream_count(nats_url, "NAQ_SCHEDULES"),
        await stream_count(nats_url, "KV_naq_results"),
    )


@pytest.fixture
async def nothing_stored(nats_url: str) -> AsyncIterator[None]:
    """Fails the test if it stored any job message or job record on the server."""
    # make sure the streams exist, so a count of 0 means "nothing stored", not "no stream"
    async with naq.Queue("bad-input-setup", nats_url=nats_url) as q:
        await q.enqueue(jobs.add, 0, 0)
    before = await _stored(nats_url)
    assert before[0] > 0 and before[1] > 0
    yield
    assert await _stored(nats_url) == before, "a refused call stored something"


# --------------------------------------------------------------------------- refused at the call


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("name", ["a.b", "a b", "*", ">", "", "naq.queue.x", "é"])
async def test_invalid_queue_name_is_a_configuration_error(nats_url: str, name: str) -> None:
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        await naq.enqueue(jobs.add, 1, 2, queue_name=name, nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        await naq.enqueue_many([(jobs.add, (1, 2))], queue_name=name, nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        naq.Queue(name, nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        naq.Worker([name], nats_url=nats_url)


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("name", ["a.b", "a b", "*", ">", "naq.queue.x", "é"])
async def test_purge_of_invalid_queue_name_is_a_configuration_error(
    nats_url: str, name: str
) -> None:
    with pytest.raises(naq.ConfigurationError, match="queue name"):
        await naq.purge_queue(name, nats_url=nats_url)


async def test_purge_of_empty_queue_name_does_not_purge_the_default_queue(
    nats_url: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_DEFAULT_QUEUE", queue)
    job = await naq.enqueue(jobs.add, 1, 2, nats_url=nats_url)
    assert job.queue_name == queue
    try:
        with pytest.raises(naq.ConfigurationError, match="queue name"):
            await naq.purge_queue("", nats_url=nats_url)
    finally:
        assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 1, (
            "purge_queue('') purged the default queue"
        )


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("func", [42, None, object()], ids=["int", "None", "object"])
async def test_non_callable_is_a_configuration_error(nats_url: str, func: Any) -> None:
    with pytest.raises(naq.ConfigurationError):
        await naq.enqueue(func, 1, queue_name="bad-input", nats_url=nats_url)


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("path", ["no_colon_here", "a:", ":b", "a b:c", "mod:1x"])
async def test_malformed_function_path_is_a_configuration_error(nats_url: str, path: str) -> None:
    with pytest.raises(naq.ConfigurationError):
        await naq.enqueue(path, queue_name="bad-input", nats_url=nats_url)


@pytest.mark.usefixtures("nothing_stored")
async def test_lambda_is_a_serialization_error(nats_url: str) -> None:
    with pytest.raises(naq.SerializationError, match="lambda"):
        await naq.enqueue(lambda: 1, queue_name="bad-input", nats_url=nats_url)


@pytest.mark.usefixtures("nothing_stored")
async def test_local_function_is_a_serialization_error(nats_url: str) -> None:
    def local(x: int) -> int:
        return x

    with pytest.raises(naq.SerializationError, match="inside another function"):
        await naq.enqueue(local, 1, queue_name="bad-input", nats_url=nats_url)


@pytest.mark.usefixtures("nothing_stored")
async def test_custom_object_argument_names_type_and_position(nats_url: str) -> None:
    with pytest.raises(naq.SerializationError) as positional:
        await naq.enqueue(jobs.echo, jobs.Opaque(), queue_name="bad-input", nats_url=nats_url)
    assert "Opaque" in str(positional.value)
    assert "args[0]" in str(positional.value)

    with pytest.raises(naq.SerializationError) as second:
        await naq.enqueue(jobs.add, 1, jobs.Opaque(), queue_name="bad-input", nats_url=nats_url)
    assert "Opaque" in str(second.value)
    assert "args[1]" in str(second.value)

    with pytest.raises(naq.SerializationError) as nested:
        await naq.enqueue(
            jobs.echo_kwargs,
            payload={"items": [1, jobs.Opaque()]},
            queue_name="bad-input",
            nats_url=nats_url,
        )
    assert "Opaque" in str(nested.value)
    assert "payload" in str(nested.value)


@pytest.mark.usefixtures("nothing_stored")
async def test_one_bad_call_in_enqueue_many_stores_nothing(nats_url: str) -> None:
    calls = [(jobs.add, (1, 2), {}), (jobs.add, (3, 4), {}), (jobs.echo, (jobs.Opaque(),), {})]
    with pytest.raises(naq.SerializationError, match="Opaque"):
        await naq.enqueue_many(calls, queue_name="bad-input", nats_url=nats_url)
    with pytest.raises(naq.SerializationError):
        await naq.enqueue_many(
            [(jobs.add, (1, 2)), (lambda: 0, ())], queue_name="bad-input", nats_url=nats_url
        )


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"timeout": 0},
        {"timeout": -3},
        {"retry_delay": -1},
        {"retry_strategy": "random"},
        {"retry_on": (ValueError, "nope")},
        {"job_id": "has space"},
        {"job_id": "a.b"},
        {"result_ttl": 0},
    ],
    ids=repr,
)
async def test_invalid_job_option_is_a_configuration_error(
    nats_url: str, options: dict[str, Any]
) -> None:
    with pytest.raises(naq.ConfigurationError):
        await naq.enqueue(jobs.add, 1, 2, queue_name="bad-input", nats_url=nats_url, **options)


async def test_http_url_is_a_configuration_error_naming_the_scheme() -> None:
    with pytest.raises(naq.ConfigurationError, match="scheme") as info:
        await naq.enqueue(jobs.add, 1, 2, queue_name="bad-input", nats_url="http://x")
    assert "http://x" in str(info.value)
    with pytest.raises(naq.ConfigurationError, match="scheme"):
        naq.Worker(["bad-input"], nats_url="http://x")
    with pytest.raises(naq.ConfigurationError, match="scheme"):
        naq.Queue("bad-input", nats_url="http://x")


async def test_unreachable_server_is_a_clear_connection_error() -> None:
    url = "nats://127.0.0.1:1"
    with pytest.raises(naq.NaqConnectionError) as info:
        await naq.enqueue(jobs.add, 1, 2, queue_name="bad-input", nats_url=url)
    message = str(info.value)
    assert "cannot reach NATS at" in message
    assert "naq server" in message
    assert "127.0.0.1:1" in message

    with pytest.raises(naq.NaqConnectionError, match="cannot reach NATS at"):
        await naq.Worker(["bad-input"], nats_url=url).run()
    with pytest.raises(naq.NaqConnectionError, match="naq server"):
        await naq.list_workers(nats_url=url)


# --------------------------------------------------------------------------- bad messages


@pytest.mark.parametrize(
    "garbage",
    [b"\x00garbage\xff", b'{"not": "a job"}', b"[1, 2, 3]", b""],
    ids=["binary", "json-object", "json-list", "empty"],
)
async def test_undecodable_message_goes_to_dlq_and_worker_goes_on(
    nats_url: str, queue: str, running_worker: Any, garbage: bytes
) -> None:
    before = await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)
    async with raw_nats(nats_url) as nc:
        await nc.jetstream().publish(f"naq.queue.{queue}", garbage)
    after = await naq.enqueue(jobs.add, 2, 2, queue_name=queue, nats_url=nats_url)

    async with running_worker([queue], nats_url, concurrency=1):
        assert await before.result(timeout=WAIT) == 2
        assert await after.result(timeout=WAIT) == 4
        dead = await dlq_messages(nats_url, queue)
        later = await naq.enqueue(jobs.add, 3, 3, queue_name=queue, nats_url=nats_url)
        assert await later.result(timeout=WAIT) == 6

    assert len(dead) == 1
    entry = dead[0]
    assert (entry.data or b"") == garbage  # raw bytes intact
    assert entry.headers is not None
    assert "decode" in entry.headers["Naq-Dlq-Reason"]
    assert await stream_count(nats_url, "NAQ_JOBS", f"naq.queue.{queue}") == 0


@pytest.mark.parametrize(
    ("path", "make_args"),
    [
        ("os:system", lambda p: (f"touch {p}",)),
        ("subprocess:run", lambda p: (["touch", str(p)],)),
        ("subprocess:check_call", lambda p: (["touch", str(p)],)),
        ("builtins:exec", lambda p: (f"open({str(p)!r}, 'w').close()",)),
        ("pathlib:Path.touch", lambda p: (str(p),)),
    ],
    ids=["os.system", "subprocess.run", "subprocess.check_call", "builtins.exec", "pathlib"],
)
async def test_library_functions_are_refused_and_dead_lettered(
    nats_url: str,
    queue: str,
    running_worker: Any,
    tmp_path: Path,
    path: str,
    make_args: Any,
) -> None:
    marker = tmp_path / "pwned"
    job = await naq.enqueue(path, *make_args(marker), queue_name=queue, nats_url=nats_url)
    assert job.function == path

    async with running_worker([queue], nats_url):
        with pytest.raises(naq.JobExecutionError, match="not allowed") as info:
            await job.result(timeout=WAIT)
        # the worker goes on with allowed work
        ok = await naq.enqueue(jobs.add, 5, 5, queue_name=queue, nats_url=nats_url)
        assert await ok.result(timeout=WAIT) == 10

    assert path in str(info.value)
    assert not marker.exists()
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.DEAD
    job_info = await naq.get_job_info(job.job_id, nats_url=nats_url)
    assert job_info.error is not None and "not allowed" in job_info.error

    dead = await dlq_messages(nats_url, queue)
    assert len(dead) == 1
    headers = dead[0].headers or {}
    assert headers.get("Naq-Dlq-Job-Id") == job.job_id
    assert "not allowed" in headers["Naq-Dlq-Reason"]
    assert path in headers["Naq-Dlq-Reason"]
    assert dead[0].data and job.job_id.encode() in dead[0].data  # the original job message


def test_storage_laid_out_by_an_older_naq_is_refused_with_a_clear_message() -> None:
    """Before one-off schedules had their own stream, NAQ_JOBS held them and allowed message
    schedules, which the server cannot turn off: say what to do, do not fail obscurely."""
    from nats.js.api import RetentionPolicy, StreamConfig

    from naq.server import EmbeddedServer

    async def scenario(url: str) -> None:
        async with raw_nats(url) as nc:
            await nc.jetstream().add_stream(
                StreamConfig(
                    name="NAQ_JOBS",
                    subjects=["naq.queue.*", "naq.sched.>"],
                    retention=RetentionPolicy.WORK_QUEUE,
                    allow_msg_schedules=True,
                )
            )
        with pytest.raises(naq.ConfigurationError, match="older naq"):
            await naq.enqueue(jobs.add, 1, 2, nats_url=url)
        await naq.close()

    with EmbeddedServer() as server:
        asyncio.run(scenario(server.url))
