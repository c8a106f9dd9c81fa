"""The dashboard's JSON API (``/api/...``) against a real server and real workers: every read,
every action on real jobs, naq's errors as 404/422/503, and a schemathesis run over the
OpenAPI schema that finds no server error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from tests import dashboard_jobs as dj
from tests.helpers import WAIT, eventually, queue_worker, running_scheduler

import naq
from naq.dashboard import create_app
from naq.server import EmbeddedServer, free_port
from naq.settings import load_settings

SCRIPT = "<script>alert('naq')</script>"
TOKEN = "dashboard-api-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the dashboard app, inside its lifespan (connected to the test server)."""
    app = create_app(load_settings(nats_url), token=TOKEN)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://dashboard", headers=BEARER
        ) as client:
            yield client


async def get_ok(api: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def send_ok(api: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await api.request(method, path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def problem(response: httpx.Response, status: int) -> str:
    """The naq message of an error answer with ``status``."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    return detail


async def dead_letter_ids(api: httpx.AsyncClient, queue: str, count: int) -> list[int]:
    async def enough() -> list[int] | None:
        entries = await get_ok(api, "/api/dlq", queue=queue)
        return [e["id"] for e in entries] if len(entries) >= count else None

    return await eventually(enough)


async def job_status(api: httpx.AsyncClient, job_id: str) -> str:
    return str((await get_ok(api, f"/api/jobs/{job_id}"))["job"]["status"])


# ---------------------------------------------------------------------------------- reads


async def test_reads_show_queues_workers_and_a_job_verbatim(
    api: httpx.AsyncClient, nats_url: str, queue: str
) -> None:
    assert await get_ok(api, "/api/health") == {"connected": True}
    async with queue_worker(queue, nats_url) as worker:
        job = await naq.enqueue(dj.echo, SCRIPT, tag=SCRIPT, queue_name=queue, nats_url=nats_url)
        assert await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

        workers = await get_ok(api, "/api/workers")
        assert worker.worker_id in [w["worker_id"] for w in workers]
        (info,) = [q for q in await get_ok(api, "/api/queues") if q["name"] == queue]
        assert info["workers"] == 1

        overview = await get_ok(api, "/api/overview")
        assert queue in [q["name"] for q in overview["queues"]]
        assert worker.worker_id in [w["worker_id"] for w in overview["workers"]]
        assert [p["queue"] for p in overview["throughput"]].count(queue) == 1

        async def counted() -> bool:
            overview = await get_ok(api, "/api/overview")
            (point,) = [p for p in overview["throughput"] if p["queue"] == queue]
            return bool(point["completed_last_minute"] == 1)

        await eventually(counted)

    response = await api.get(f"/api/jobs/{job.job_id}")
    assert response.status_code == 200
    assert SCRIPT in response.text  # JSON, not HTML: the pages escape it, the API does not
    detail = response.json()
    assert detail["job"]["status"] == "completed"
    assert detail["job"]["function"] == "tests.dashboard_jobs:echo"
    assert detail["result"] == {"args": [SCRIPT], "kwargs": {"tag": SCRIPT}}
    # a finished job's call is kept in its record (its message is gone)
    assert (detail["args"], detail["kwargs"]) == ([SCRIPT], {"tag": SCRIPT})
    assert detail["arguments_note"] is None
    assert detail["dependants"] == []
    assert len(detail["job"]["attempts"]) == 1

    hit = await get_ok(api, "/api/search", q=f" {job.job_id} ")
    assert hit == {
        "job_id": job.job_id,
        "api": f"/api/jobs/{job.job_id}",
        "page": f"/jobs/{job.job_id}",
    }
    assert "not found" in problem(await api.get("/api/search", params={"q": "no-such-job"}), 404)


async def test_a_waiting_job_shows_its_arguments_and_dependants(
    api: httpx.AsyncClient, nats_url: str, queue: str
) -> None:
    later = await naq.enqueue_in(3600, dj.echo, SCRIPT, n=1, queue_name=queue, nats_url=nats_url)
    child = await naq.enqueue(
        dj.echo, [SCRIPT], depends_on=[later], queue_name=queue, nats_url=nats_url
    )
    detail = await get_ok(api, f"/api/jobs/{later.job_id}")
    assert detail["job"]["status"] == "scheduled"
    assert (detail["args"], detail["kwargs"]) == ([SCRIPT], {"n": 1})
    assert detail["dependants"] == [child.job_id]

    detail = await get_ok(api, f"/api/jobs/{child.job_id}")
    assert detail["job"]["status"] == "deferred"
    assert detail["job"]["depends_on"] == [later.job_id]
    assert detail["job"]["waiting_on"] == [later.job_id]
    assert (detail["args"], detail["kwargs"]) == ([[SCRIPT]], {})

    cancelled = await send_ok(api, "POST", f"/api/jobs/{later.job_id}/cancel")
    assert cancelled == {"job_id": later.job_id, "cancelled": True}
    assert await job_status(api, later.job_id) == "cancelled"
    assert await job_status(api, child.job_id) == "cancelled"  # its dependant too
    again = await send_ok(api, "POST", f"/api/jobs/{later.job_id}/cancel")
    assert again["cancelled"] is False
    assert "not found" in problem(await api.post("/api/jobs/nope-nope/cancel"), 404)


async def test_queue_detail_without_and_with_events(
    api: httpx.AsyncClient, nats_url: str, queue: str
) -> None:
    async with queue_worker(queue, nats_url):
        detail = await get_ok(api, f"/api/queues/{queue}")
        assert detail["queue"]["name"] == queue
        assert detail["events"] is False
        assert "NAQ_EVENTS=1" in detail["events_note"]
        assert detail["recent_jobs"] == []

    async with queue_worker(queue, nats_url, events=True, heartbeat_interval=0.2):
        slow = await naq.enqueue(dj.sleep_for, 1.5, queue_name=queue, nats_url=nats_url)

        async def running() -> bool:
            detail = await get_ok(api, f"/api/queues/{queue}")
            return bool(detail["running_jobs"] == [slow.job_id])

        await eventually(running)
        await naq.fetch_job_result(slow.job_id, timeout=WAIT, nats_url=nats_url)

        async def listed() -> Any:
            detail = await get_ok(api, f"/api/queues/{queue}")
            recent = {j["job_id"]: j for j in detail["recent_jobs"]}
            found = recent.get(slow.job_id)
            return detail if found and found["kind"] == "completed" else None

        detail = await eventually(listed)
    assert detail["events"] is True
    assert detail["events_note"] is None
    assert detail["recent_jobs"][0]["function"] == "tests.dashboard_jobs:sleep_for"


# -------------------------------------------------------------------------------- actions


async def test_pause_and_resume_a_queue(api: httpx.AsyncClient, nats_url: str, queue: str) -> None:
    async with queue_worker(queue, nats_url):
        await send_ok(api, "POST", f"/api/queues/{queue}/pause")
        assert (await get_ok(api, f"/api/queues/{queue}"))["queue"]["paused"] is True
        job = await naq.enqueue(dj.echo, 1, queue_name=queue, nats_url=nats_url)
        await asyncio.sleep(0.5)
        assert await job_status(api, job.job_id) == "pending"  # nothing starts while paused

        await send_ok(api, "POST", f"/api/queues/{queue}/resume")
        assert (await get_ok(api, f"/api/queues/{queue}"))["queue"]["paused"] is False
        assert await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)


async def test_dead_letters_raw_view_requeue_delete_and_bulk_requeue(
    api: httpx.AsyncClient, nats_url: str, queue: str, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    async with queue_worker(queue, nats_url):
        jobs = [
            await naq.enqueue(dj.needs_flag, str(flag), queue_name=queue, nats_url=nats_url)
            for _ in range(4)
        ]
        ids = await dead_letter_ids(api, queue, 4)

        view = await get_ok(api, f"/api/dlq/{ids[0]}")
        assert view["kind"] == "failed"
        assert view["queue"] == queue
        assert "flag file" in view["reason"]
        assert view["payload_encoding"] == "utf-8"
        assert "tests.dashboard_jobs:needs_flag" in view["payload"]
        failures = (await get_ok(api, "/api/overview"))["recent_failures"]
        assert [f["id"] for f in failures][:4] == ids[::-1]  # newest first

        flag.touch()
        requeued = await send_ok(api, "POST", f"/api/dlq/{ids[0]}/requeue")
        assert requeued["id"] == ids[0]
        job_id = requeued["job_id"]
        assert job_id in {j.job_id for j in jobs}
        assert await naq.fetch_job_result(job_id, timeout=WAIT, nats_url=nats_url) == "flag found"
        assert "no dead letter" in problem(await api.get(f"/api/dlq/{ids[0]}"), 404)

        await send_ok(api, "DELETE", f"/api/dlq/{ids[1]}")
        assert "no dead letter" in problem(await api.delete(f"/api/dlq/{ids[1]}"), 404)

        bulk = await send_ok(api, "POST", "/api/dlq/requeue", params={"queue": queue})
        assert sorted(r["id"] for r in bulk["requeued"]) == ids[2:]
        assert bulk["skipped"] == []
        for entry in bulk["requeued"]:
            result = await naq.fetch_job_result(entry["job_id"], timeout=WAIT, nats_url=nats_url)
            assert result == "flag found"
    assert await get_ok(api, "/api/dlq", queue=queue) == []


async def test_an_undecodable_dead_letter_shows_base64(
    api: httpx.AsyncClient, nats_url: str, queue: str
) -> None:
    async with queue_worker(queue, nats_url):
        first = await naq.enqueue(dj.echo, queue_name=queue, nats_url=nats_url)
        await naq.fetch_job_result(first.job_id, timeout=WAIT, nats_url=nats_url)
        nc = await nats.connect(nats_url, allow_reconnect=False)
        try:
            await nc.jetstream().publish(f"naq.queue.{queue}", b"\xff\xfe not json")
        finally:
            await nc.close()
        (entry_id,) = await dead_letter_ids(api, queue, 1)
    view = await get_ok(api, f"/api/dlq/{entry_id}")
    assert view["payload_encoding"] == "base64"
    assert view["payload"] == "//4gbm90IGpzb24="
    assert view["job_id"] is None


async def test_schedules_pause_resume_run_now_and_cancel(
    api: httpx.AsyncClient, nats_url: str, queue: str
) -> None:
    sid = f"every-hour-{queue}"[:100]
    await naq.schedule(
        dj.echo, "tick", interval=3600, schedule_id=sid, queue_name=queue, nats_url=nats_url
    )

    async def schedule() -> dict[str, Any]:
        (found,) = [s for s in await get_ok(api, "/api/schedules") if s["schedule_id"] == sid]
        return dict(found)

    assert (await schedule())["function"] == "tests.dashboard_jobs:echo"
    paused = await send_ok(api, "POST", f"/api/schedules/{sid}/pause")
    assert paused["status"] == "paused"
    assert (await schedule())["status"] == "paused"
    resumed = await send_ok(api, "POST", f"/api/schedules/{sid}/resume")
    assert resumed["status"] == "active"

    async with queue_worker(queue, nats_url), running_scheduler(nats_url):

        async def ran(times: int) -> dict[str, Any] | None:
            found = await schedule()
            return found if found["runs"] >= times else None

        before = (await eventually(lambda: ran(0)))["runs"]
        await send_ok(api, "POST", f"/api/schedules/{sid}/run")
        after = await eventually(lambda: ran(before + 1))
    assert after["next_run"] is not None

    await send_ok(api, "DELETE", f"/api/schedules/{sid}")
    assert sid not in [s["schedule_id"] for s in await get_ok(api, "/api/schedules")]
    assert "no scheduled job" in problem(await api.delete(f"/api/schedules/{sid}"), 404)
    assert "no scheduled job" in problem(await api.post(f"/api/schedules/{sid}/pause"), 404)


async def test_limits_set_show_usage_and_delete(
    api: httpx.AsyncClient, nats_url: str, queue: str
) -> None:
    name = f"dash:{queue}"[:128]
    view = await send_ok(api, "PUT", f"/api/limits/{name}", json={"concurrency": 1, "rate": "5/m"})
    assert view == {"name": name, "concurrency": 1, "rate": "5/m", "usage": []}

    async with queue_worker(queue, nats_url):
        job = await naq.enqueue(
            dj.sleep_for, 1.5, limits=[name], queue_name=queue, nats_url=nats_url
        )

        async def in_use() -> dict[str, Any] | None:
            (found,) = [v for v in await get_ok(api, "/api/limits") if v["name"] == name]
            return found if found["usage"] and found["usage"][0]["running"] == 1 else None

        found = await eventually(in_use)
        assert found["usage"] == [{"key": name, "running": 1, "rate_used": 1}]
        await naq.fetch_job_result(job.job_id, timeout=WAIT, nats_url=nats_url)

    await send_ok(api, "DELETE", f"/api/limits/{name}")
    assert name not in [v["name"] for v in await get_ok(api, "/api/limits")]
    assert f"no limit {name}" in problem(await api.delete(f"/api/limits/{name}"), 404)


# --------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("GET", "/api/jobs/no-such-job", None, 404, "not found"),
        ("GET", "/api/jobs/not.a.job.id", None, 404, "not a valid job id"),
        ("GET", "/api/queues/no-such-queue", None, 404, "no queue"),
        ("GET", "/api/queues/bad%20name", None, 422, "invalid queue name"),
        ("POST", "/api/queues/bad%20name/pause", None, 422, "invalid queue name"),
        ("GET", "/api/dlq?queue=bad%20name", None, 422, "invalid queue name"),
        ("POST", "/api/dlq/requeue?queue=a.b", None, 422, "invalid queue name"),
        ("GET", "/api/dlq/987654", None, 404, "no dead letter"),
        ("POST", "/api/schedules/nope/run", None, 404, "no scheduled job"),
        ("PUT", "/api/limits/bad%20name", {"concurrency": 1}, 422, "invalid limit name"),
        ("PUT", "/api/limits/ok-name", {}, 422, "needs a concurrency, a rate or both"),
        ("PUT", "/api/limits/ok-name", {"rate": "fast"}, 422, "invalid rate"),
        ("PUT", "/api/limits/ok-name", {"concurrency": 0}, 422, "concurrency must be"),
        ("DELETE", "/api/limits/no-such-limit", None, 404, "no limit"),
    ],
)
async def test_naq_errors_answer_with_their_status_and_message(
    api: httpx.AsyncClient, method: str, path: str, body: Any, status: int, words: str
) -> None:
    response = await api.request(method, path, json=body)
    assert words in problem(response, status)


async def test_bad_request_shapes_are_422_not_500(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/dlq/0")).status_code == 422
    assert (await api.get("/api/dlq/x")).status_code == 422
    assert (await api.get(f"/api/dlq/{2**64}")).status_code == 422
    assert (await api.get("/api/dlq", params={"limit": 0})).status_code == 422
    assert (await api.get("/api/search")).status_code == 422
    assert (await api.put("/api/limits/x", content=b"not json")).status_code == 422
    assert (await api.get("/api/queues/x/pause")).status_code == 405  # actions are never GET


async def test_openapi_describes_every_endpoint_and_its_response(api: httpx.AsyncClient) -> None:
    spec = await get_ok(api, "/api/openapi.json")
    paths = spec["paths"]
    expected = {
        "/api/health": {"get"},
        "/api/overview": {"get"},
        "/api/queues": {"get"},
        "/api/queues/{name}": {"get"},
        "/api/queues/{name}/pause": {"post"},
        "/api/queues/{name}/resume": {"post"},
        "/api/jobs/{job_id}": {"get"},
        "/api/jobs/{job_id}/cancel": {"post"},
        "/api/workers": {"get"},
        "/api/schedules": {"get"},
        "/api/schedules/{schedule_id}": {"delete"},
        "/api/schedules/{schedule_id}/pause": {"post"},
        "/api/schedules/{schedule_id}/resume": {"post"},
        "/api/schedules/{schedule_id}/run": {"post"},
        "/api/limits": {"get"},
        "/api/limits/{name}": {"put", "delete"},
        "/api/dlq": {"get"},
        "/api/dlq/requeue": {"post"},
        "/api/dlq/{entry_id}": {"get", "delete"},
        "/api/dlq/{entry_id}/requeue": {"post"},
        "/api/search": {"get"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods:
            answers = paths[path][method]["responses"]
            assert answers["200"]["content"]["application/json"]["schema"], (path, method)
            assert {"404", "503"} <= set(answers), (path, method)
    schemas = spec["components"]["schemas"]
    assert {"JobDetail", "JobInfo", "QueueInfo", "WorkerInfo", "Schedule"} <= set(schemas)


# -------------------------------------------------------------------- property-based run


@pytest.fixture(scope="module")
def dashboard_url(nats_server: EmbeddedServer) -> Iterator[str]:
    """The dashboard served by uvicorn on a thread of its own (its own loop)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(load_settings(nats_server.url), token=TOKEN),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "dashboard did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)


#: Examples per API operation (about 20 operations: a few hundred requests in all).
EXAMPLES = 15


def test_no_request_gets_a_server_error(dashboard_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{dashboard_url}/api/openapi.json", headers=BEARER)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    calls = 0

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def no_server_error(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                base_url=dashboard_url, headers=BEARER, checks=[not_a_server_error]
            )

        no_server_error()
    assert calls >= 200  # a few hundred requests were made


# ------------------------------------------------------------------- NATS out of reach


async def test_503_while_nats_is_away_then_recovery(
    api: httpx.AsyncClient, nats_server: EmbeddedServer
) -> None:
    nats_server.stop()
    try:

        async def disconnected() -> bool:
            return (await get_ok(api, "/api/health")) == {"connected": False}

        await eventually(disconnected)
        started = time.monotonic()
        assert "out of reach" in problem(await api.get("/api/queues"), 503)
        assert "out of reach" in problem(await api.post("/api/queues/q/pause"), 503)
        assert time.monotonic() - started < 1.0  # at once, not after a timeout
    finally:
        nats_server.start()

    async def recovered() -> bool:
        return (await api.get("/api/queues")).status_code == 200

    await eventually(recovered, timeout=30)
    assert await get_ok(api, "/api/health") == {"connected": True}
