"""The dashboard's safety: the token (Bearer header for the API, a login form and session
cookie for the pages), the checks against cross-site requests, the refusal to listen beyond
loopback without a token, and ``naq dashboard`` itself (a real subprocess)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from tests.cli_run import ROOT, naq_cli

from naq.dashboard import create_app
from naq.dashboard.server import check_bind, is_loopback, listen, serve
from naq.errors import ConfigurationError
from naq.server import free_port
from naq.settings import load_settings

TOKEN = "s3cret-dashboard-token"
REFUSAL = "refusing to listen on 0.0.0.0 without a token: set NAQ_DASHBOARD_TOKEN or --token"


def _test_routes() -> APIRouter:
    """Endpoints to check the rules against, whatever the API and pages offer."""
    router = APIRouter()

    @router.get("/api/test/ping")
    async def api_ping() -> dict[str, str]:
        return {"pong": "yes"}

    @router.post("/api/test/poke")
    async def api_poke() -> dict[str, str]:
        return {"poked": "yes"}

    @router.get("/test/page")
    async def page(request: Request) -> dict[str, str]:
        return {"csrf": request.state.csrf_token}

    @router.post("/test/act")
    async def act(request: Request) -> dict[str, str]:
        async with request.form() as form:  # the app still reads the body the check read
            return {"acted": str(form.get("what", ""))}

    return router


def _app(nats_url: str, token: str | None) -> FastAPI:
    app = create_app(load_settings(nats_url), token=token or "")
    app.include_router(_test_routes())
    return app


async def _client(app: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a dashboard with a token, over http."""
    async for c in _client(_app(nats_url, TOKEN), "http://dash.test"):
        yield c


@pytest.fixture
async def open_client(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a dashboard without a token."""
    async for c in _client(_app(nats_url, None), "http://dash.test"):
        yield c


async def _login(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    page = await client.get("/login")
    assert page.status_code == 200
    return await client.post(
        "/login",
        data={"token": token, "csrf_token": client.cookies["naq_csrf"], "next": "/test/page"},
    )


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each ``Set-Cookie`` of ``response`` by cookie name (the whole header value)."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


# -- the token ------------------------------------------------------------------------------
async def test_api_needs_the_bearer_token(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/test/ping")
    assert missing.status_code == 401
    assert "Bearer" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await client.get("/api/test/ping", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = await client.get("/api/test/ping", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert right.json() == {"pong": "yes"}
    health = await client.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert health.status_code == 200


async def test_pages_redirect_to_the_login_form(client: httpx.AsyncClient) -> None:
    response = await client.get("/test/page?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Ftest%2Fpage%3Fx%3D1"
    htmx = await client.get("/test/page", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"] == "/login"
    form = await client.get("/login")
    assert form.status_code == 200
    assert 'name="token"' in form.text
    assert f'name="csrf_token" value="{client.cookies["naq_csrf"]}"' in form.text
    static = await client.get("/static/htmx.min.js")  # public: no redirect whatever is there
    assert static.status_code not in (303, 401)


async def test_login_with_a_wrong_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await _login(client, "not-the-token")
    assert response.status_code == 401
    assert "not the dashboard&#39;s token" in response.text
    assert "naq_session" not in _set_cookies(response)
    assert (await client.get("/test/page")).status_code == 303


async def test_login_sets_a_session_cookie_that_is_not_the_token(
    client: httpx.AsyncClient,
) -> None:
    response = await _login(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/test/page"
    session = _set_cookies(response)["naq_session"]
    assert "HttpOnly" in session
    assert "SameSite=Strict" in session
    assert "Secure" not in session  # plain http: a Secure cookie would never come back
    assert TOKEN not in session
    page = await client.get("/test/page")
    assert page.status_code == 200
    assert page.json()["csrf"] == client.cookies["naq_csrf"]
    # the session works for the API too (htmx calls it from the pages)
    assert (await client.get("/api/test/ping")).status_code == 200
    # a wrong Bearer header is refused even with the cookie
    wrong = await client.get("/api/test/ping", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    await _login(client)
    csrf = {"X-CSRF-Token": client.cookies["naq_csrf"]}
    response = await client.post("/logout", headers=csrf)
    assert response.status_code == 303
    assert "Max-Age=0" in _set_cookies(response)["naq_session"]
    assert (await client.get("/test/page")).status_code == 303


async def test_cookies_are_secure_over_https(nats_url: str) -> None:
    async for client in _client(_app(nats_url, TOKEN), "https://dash.test"):
        first = await client.get("/test/page")
        assert "Secure" in _set_cookies(first)["naq_csrf"]
        response = await _login(client)
        assert response.status_code == 303
        assert "Secure" in _set_cookies(response)["naq_session"]


async def test_session_cookies_do_not_outlive_the_app(nats_url: str) -> None:
    """The cookie is keyed per app: a cookie from another dashboard with the same token
    (or one made up from the token) does not log in."""
    async for client in _client(_app(nats_url, TOKEN), "http://dash.test"):
        await _login(client)
        stolen = client.cookies["naq_session"]
    async for client in _client(_app(nats_url, TOKEN), "http://dash.test"):
        for value in (stolen, TOKEN):
            client.cookies.set("naq_session", value)
            assert (await client.get("/test/page")).status_code == 303


# -- cross-site requests ---------------------------------------------------------------------
async def test_a_post_with_the_session_needs_the_csrf_token(client: httpx.AsyncClient) -> None:
    await _login(client)
    csrf = client.cookies["naq_csrf"]
    without = await client.post("/test/act", data={"what": "x"})
    assert without.status_code == 403
    assert "CSRF" in without.text
    wrong = await client.post("/test/act", headers={"X-CSRF-Token": "w" * 43})
    assert wrong.status_code == 403
    header = await client.post("/test/act", data={"what": "h"}, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 200
    assert header.json() == {"acted": "h"}
    field = await client.post("/test/act", data={"what": "f", "csrf_token": csrf})
    assert field.status_code == 200
    assert field.json() == {"acted": "f"}  # the app still read the body after the check
    multipart = await client.post(
        "/test/act", data={"what": "m", "csrf_token": csrf}, files={"f": ("a.txt", b"a")}
    )
    assert multipart.json() == {"acted": "m"}
    api = await client.post("/api/test/poke")
    assert api.status_code == 403
    assert "CSRF" in api.json()["detail"]
    assert (await client.post("/api/test/poke", headers={"X-CSRF-Token": csrf})).is_success


async def test_a_cross_origin_post_is_refused(client: httpx.AsyncClient) -> None:
    await _login(client)
    csrf = {"X-CSRF-Token": client.cookies["naq_csrf"]}
    for origin in ({"Origin": "http://evil.test"}, {"Origin": "null"}):
        refused = await client.post("/test/act", headers=csrf | origin)
        assert refused.status_code == 403
        assert "Origin" in refused.text
    referer = await client.post("/test/act", headers=csrf | {"Referer": "http://evil.test/x"})
    assert referer.status_code == 403
    bearer = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.test"}
    assert (await client.post("/api/test/poke", headers=bearer)).status_code == 403
    same = await client.post("/test/act", headers=csrf | {"Origin": "http://dash.test"})
    assert same.status_code == 200
    same_port = await client.post("/test/act", headers=csrf | {"Origin": "http://dash.test:80"})
    assert same_port.status_code == 200


async def test_a_post_with_the_bearer_token_needs_no_csrf_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/test/poke", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.json() == {"poked": "yes"}
    assert "set-cookie" not in response.headers  # no CSRF cookie on API answers
    wrong = await client.post("/api/test/poke", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


async def test_without_a_token_pages_are_open_but_posts_are_checked(
    open_client: httpx.AsyncClient,
) -> None:
    assert (await open_client.get("/api/test/ping")).status_code == 200
    page = await open_client.get("/test/page")
    assert page.status_code == 200
    login = await open_client.get("/login")
    assert login.status_code == 303
    assert login.headers["location"] == "/"
    assert (await open_client.post("/api/test/poke")).status_code == 403  # e.g. a form elsewhere
    csrf = {"X-CSRF-Token": open_client.cookies["naq_csrf"]}
    assert (await open_client.post("/api/test/poke", headers=csrf)).status_code == 200
    evil = csrf | {"Origin": "http://evil.test"}
    assert (await open_client.post("/api/test/poke", headers=evil)).status_code == 403
    script = {"Authorization": "Bearer anything"}
    assert (await open_client.post("/api/test/poke", headers=script)).status_code == 200


# -- where it listens ------------------------------------------------------------------------
def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com", ""):
        assert not is_loopback(host), host


def test_a_non_loopback_address_needs_a_token() -> None:
    with pytest.raises(ConfigurationError) as info:
        check_bind("0.0.0.0", None)
    assert str(info.value) == REFUSAL
    with pytest.raises(ConfigurationError):
        check_bind("192.168.1.10", "")
    check_bind("0.0.0.0", TOKEN)
    check_bind("127.0.0.1", None)
    with pytest.raises(ConfigurationError, match=r"refusing to listen on 0\.0\.0\.0"):
        serve("0.0.0.0", 0, None, load_settings())


def test_a_port_in_use_is_one_clear_error() -> None:
    with listen("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}: address already in use"):
            listen("127.0.0.1", port)


# -- naq dashboard ---------------------------------------------------------------------------
def test_cli_refuses_a_non_loopback_bind_without_a_token() -> None:
    result = naq_cli("dashboard", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.code == 1
    assert result.error_lines == [f"error: {REFUSAL}"]


def test_cli_without_nats_is_one_line() -> None:
    result = naq_cli(
        "dashboard", "--port", str(free_port()), "-u", f"nats://127.0.0.1:{free_port()}"
    )
    assert result.code == 1
    assert len(result.error_lines) == 1, result.stderr
    assert result.error_lines[0].startswith("error: cannot reach NATS at nats://127.0.0.1:")


def test_cli_without_the_dashboard_extra_is_one_line() -> None:
    result = naq_cli(
        "dashboard",
        python_code="import sys; sys.modules['uvicorn'] = None  # as if not installed",
    )
    assert result.code == 1
    assert result.error_lines == [
        "error: the dashboard needs uvicorn: pip install 'naq[dashboard]'"
    ]


@pytest.fixture
def dashboard_process(nats_url: str) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """``naq dashboard`` on a free port with the token from the environment, its output in
    a file; stopped with SIGINT after the test if still running."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAQ_")}
    env["NAQ_DASHBOARD_TOKEN"] = TOKEN
    out = Path(f"/tmp/naq-dashboard-{port}.log")
    with out.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "naq", "dashboard", "--port", str(port), "-u", nats_url],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        yield proc, port, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.unlink(missing_ok=True)


def _get(port: int, path: str, **headers: str) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_cli_serves_the_dashboard_and_never_shows_the_token(
    dashboard_process: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, out = dashboard_process
    health = _get(port, "/api/health", Authorization=f"Bearer {TOKEN}")
    assert health.status_code == 200
    assert health.json()["connected"] is True
    assert _get(port, "/api/health").status_code == 401
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
        assert browser.get("/login").status_code == 200
        login = browser.post(
            "/login", data={"token": TOKEN, "csrf_token": browser.cookies["naq_csrf"]}
        )
        assert login.status_code == 303
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    output = out.read_text()
    assert f"naq dashboard on http://127.0.0.1:{port}" in output
    assert "GET /api/health" in output  # the access log is there...
    assert TOKEN not in output  # ...and the token nowhere
    assert "Traceback" not in output


def test_cli_stops_on_sigterm(
    dashboard_process: tuple[subprocess.Popen[str], int, Path],
) -> None:
    proc, port, _ = dashboard_process
    assert _get(port, "/api/health", Authorization=f"Bearer {TOKEN}").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_cli_port_in_use_is_one_line(nats_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = naq_cli("dashboard", "--port", str(port), "-u", nats_url)
    assert result.code == 1
    assert result.error_lines == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
    assert re.search(r"Traceback", result.stderr) is None
