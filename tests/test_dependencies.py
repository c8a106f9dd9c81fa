"""Job dependencies end to end: deferred jobs, release on completion, cancellation on
failure, results of dependencies inside the job (real server, real workers)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.dep_jobs import boom, collect, step
from tests.helpers import eventually

import naq
from naq import JobStatus

pytestmark = pytest.mark.asyncio


async def _final(q: naq.Queue, job_id: str) -> naq.JobInfo:
    async def check() -> naq.JobInfo | None:
        info = await q.get_job_info(job_id)
        return info if info.status.is_final else None

    return await eventually(check)


async def test_diamond_runs_in_order(nats_url: str, queue: str, running_worker: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        a = await q.enqueue(step, "a", 0.2)
        b = await q.enqueue(step, "b", depends_on=a)
        c = await q.enqueue(step, "c", 0.1, depends_on=[a])
        d = await q.enqueue(collect, depends_on=[b, c.job_id])
        assert await q.get_job_status(d.job_id) == JobStatus.DEFERRED
        info = await q.get_job_info(d.job_id)
        assert sorted(info.waiting_on) == sorted([b.job_id, c.job_id])
        async with running_worker([queue], nats_url, concurrency=4):
            result = await d.result(timeout=15)
        assert result == {b.job_id: "b", c.job_id: "c"}
        infos = {j.job_id: await q.get_job_info(j.job_id) for j in (a, b, c, d)}
        assert infos[b.job_id].started_at >= infos[a.job_id].finished_at
        assert infos[c.job_id].started_at >= infos[a.job_id].finished_at
        assert infos[d.job_id].started_at >= infos[b.job_id].finished_at
        assert infos[d.job_id].started_at >= infos[c.job_id].finished_at


async def test_failing_root_cancels_subtree(nats_url: str, queue: str, running_worker: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        root = await q.enqueue(boom)
        child = await q.enqueue(step, "child", depends_on=root)
        grandchild = await q.enqueue(step, "grandchild", depends_on=child)
        cleanup = await q.enqueue(step, "cleanup", depends_on=root, allow_failure=True)
        async with running_worker([queue], nats_url, concurrency=4):
            assert await cleanup.result(timeout=15) == "cleanup"
            for job in (child, grandchild):
                info = await _final(q, job.job_id)
                assert info.status == JobStatus.CANCELLED
                assert info.started_at is None
        child_info = await q.get_job_info(child.job_id)
        assert root.job_id in (child_info.error or "")
        with pytest.raises(naq.JobCancelledError):
            await q.fetch_job_result(grandchild.job_id)


async def test_completed_dependency_releases_at_once(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with (
        naq.Queue(queue, nats_url) as q,
        running_worker([queue], nats_url, concurrency=2),
    ):
        parent = await q.enqueue(step, "p")
        assert await parent.result(timeout=10) == "p"
        child = await q.enqueue(collect, depends_on=parent)
        assert await child.result(timeout=10) == {parent.job_id: "p"}


async def test_unknown_dependency_is_refused(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        with pytest.raises(naq.JobNotFoundError, match="nope"):
            await q.enqueue(step, "x", depends_on="nope", job_id="orphan")
        with pytest.raises(naq.JobNotFoundError):
            await q.get_job_info("orphan")


async def test_fan_out_each_child_once(nats_url: str, queue: str, running_worker: Any) -> None:
    async with naq.Queue(queue, nats_url) as q:
        parent = await q.enqueue(step, "p", 0.3)
        children = await q.enqueue_many(
            [(step, (f"c{i}",), {}) for i in range(50)], depends_on=parent
        )
        async with running_worker([queue], nats_url, concurrency=8):
            results = [await c.result(timeout=15) for c in children]
        assert results == [f"c{i}" for i in range(50)]
        for c in children:
            info = await q.get_job_info(c.job_id)
            assert len(info.attempts) == 1


async def test_purged_dependency_cancels_dependants(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        parent = await q.enqueue(step, "p")
        child = await q.enqueue(step, "c", depends_on=parent)
        assert await q.purge() == 1
        info = await q.get_job_info(child.job_id)
        assert info.status == JobStatus.CANCELLED
        assert parent.job_id in (info.error or "")


async def test_cycle_and_self_dependency_cannot_be_built(nats_url: str, queue: str) -> None:
    async with naq.Queue(queue, nats_url) as q:
        with pytest.raises(naq.ConfigurationError, match="itself"):
            await q.enqueue(step, "x", job_id="selfish", depends_on="selfish")
        a = await q.enqueue(step, "a", job_id="cycle-a")
        b = await q.enqueue(step, "b", job_id="cycle-b", depends_on=a)
        # "a depends on b" would close a cycle: a exists, so this returns a, unchanged
        again = await q.enqueue(step, "a", job_id="cycle-a", depends_on=b)
        assert again.job_id == "cycle-a"
        info = await q.get_job_info("cycle-a")
        assert info.depends_on == [] and info.status == JobStatus.PENDING


async def test_dependency_failed_before_enqueue(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        async with running_worker([queue], nats_url, concurrency=2):
            root = await q.enqueue(boom)
            with pytest.raises(naq.JobExecutionError):
                await root.result(timeout=10)
            doomed = await q.enqueue(step, "never", depends_on=root)
            cleanup = await q.enqueue(step, "cleanup", depends_on=root, allow_failure=True)
            assert await cleanup.result(timeout=10) == "cleanup"
        info = await q.get_job_info(doomed.job_id)
        assert info.status == JobStatus.CANCELLED and info.started_at is None
        assert f"dependency {root.job_id} ended failed" in (info.error or "")


async def test_same_id_deferred_twice_runs_once(
    nats_url: str, queue: str, running_worker: Any
) -> None:
    async with naq.Queue(queue, nats_url) as q:
        parent = await q.enqueue(step, "p", 0.2)
        first = await q.enqueue(step, "once", job_id="unique-child", depends_on=parent)
        second = await q.enqueue(step, "twice", job_id="unique-child", depends_on=parent)
        assert first.job_id == second.job_id == "unique-child"
        async with running_worker([queue], nats_url, concurrency=2):
            assert await second.result(timeout=10) == "once"
        info = await q.get_job_info("unique-child")
        assert len(info.attempts) == 1
