"""The opt-in pickle serializer: works end to end when both sides opted in, warns loudly,
and a worker that did not opt in refuses pickled jobs (dead letter, nothing runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from tests import jobs

import naq
import naq.serialization
from conftest import WAIT, dlq_messages
from naq import JobStatus


@pytest.fixture
def warnings_logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Messages of WARNING (and above) records naq logs during the test.

    The pickle warning is logged once per role and process; forget earlier ones so this
    test sees its own."""
    monkeypatch.setattr(naq.serialization, "_warned", set())
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(sink)


def pickle_warnings(messages: list[str], role: str) -> list[str]:
    return [m for m in messages if "pickle" in m.lower() and f"{role} start" in m]


async def test_pickle_serializer_carries_custom_objects_end_to_end(
    nats_url: str,
    queue: str,
    running_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: list[str],
) -> None:
    monkeypatch.setenv("NAQ_JOB_SERIALIZER", "pickle")

    async with naq.Queue(queue, nats_url=nats_url) as q:
        producer_warnings = pickle_warnings(warnings_logged, "producer")
        assert len(producer_warnings) == 1
        assert "arbitrary code" in producer_warnings[0]

        job = await q.enqueue(jobs.describe_point, jobs.Point(2, 3))
        module_level = await naq.enqueue(
            jobs.describe_point, point=jobs.Point(5, 8), queue_name=queue, nats_url=nats_url
        )
        assert pickle_warnings(warnings_logged, "worker") == []

        async with running_worker([queue], nats_url):
            assert await job.result(timeout=WAIT) == ["tests.jobs.Point", 2, 3]
            assert await module_level.result(timeout=WAIT) == ["tests.jobs.Point", 5, 8]

    worker_warnings = pickle_warnings(warnings_logged, "worker")
    assert len(worker_warnings) == 1
    assert "arbitrary code" in worker_warnings[0]


async def test_worker_without_pickle_refuses_pickled_job(
    nats_url: str,
    queue: str,
    running_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    warnings_logged: list[str],
) -> None:
    marker = tmp_path / "ran"
    monkeypatch.setenv("NAQ_JOB_SERIALIZER", "pickle")
    async with naq.Queue(queue, nats_url=nats_url) as q:
        job = await q.enqueue(jobs.touch_with_point, str(marker), jobs.Point(1, 2))

    monkeypatch.delenv("NAQ_JOB_SERIALIZER")
    ok = await naq.enqueue(jobs.add, 1, 1, queue_name=queue, nats_url=nats_url)  # plain JSON
    async with running_worker([queue], nats_url, concurrency=1):
        with pytest.raises(naq.JobExecutionError, match="pickle"):
            await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)
        # the worker goes on with ordinary JSON jobs
        assert await ok.result(timeout=WAIT) == 2

    assert pickle_warnings(warnings_logged, "worker") == []  # this worker did not opt in
    assert not marker.exists()
    assert await naq.get_job_status(job.job_id, nats_url=nats_url) == JobStatus.DEAD
    dead = await dlq_messages(nats_url, queue)
    assert len(dead) == 1
    headers = dead[0].headers or {}
    assert headers.get("Naq-Dlq-Job-Id") == job.job_id
    assert "pickle" in headers["Naq-Dlq-Reason"]


async def test_json_producer_still_refuses_custom_objects(nats_url: str, queue: str) -> None:
    # without the opt-in, the same call is refused at enqueue
    with pytest.raises(naq.SerializationError, match="Point"):
        await naq.enqueue(
            jobs.describe_point, jobs.Point(1, 1), queue_name=queue, nats_url=nats_url
        )


def test_unknown_serializer_is_a_configuration_error(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAQ_JOB_SERIALIZER", "marshal")
    with pytest.raises(naq.ConfigurationError, match="NAQ_JOB_SERIALIZER"):
        naq.Queue("q", nats_url=nats_url)
    with pytest.raises(naq.ConfigurationError, match="NAQ_JOB_SERIALIZER"):
        naq.Worker(["q"], nats_url=nats_url)
