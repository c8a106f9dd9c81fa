"""The dashboard's pages in a real browser (Playwright driving Debian's headless chromium)
against a real nats-server, a real worker (events on) and the app served by uvicorn: a job
appears and completes live, a dead letter is requeued, a queue paused, an action without
the CSRF token or the login refused, job data never runs as script, the "disconnected"
banner comes and goes with NATS. ``NAQ_DASHBOARD_SCREENSHOTS=1`` also saves the docs'
screenshots into ``docs/images/``."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from tests import dashboard_jobs as dj

import naq
from naq.dashboard import create_app
from naq.server import EmbeddedServer, free_port
from naq.settings import load_settings

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-browser-test-token"
QUEUE = "dash-live"
IDLE_QUEUE = "dash-idle"  # no worker: its jobs stay waiting
TIMEOUT_MS = 15_000
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
XSS = "<script>window.__xss = 1</script><img src=x onerror='window.__xss = 1'>"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")


@pytest.fixture(scope="module")
def dashboard(nats_server: EmbeddedServer) -> Iterator[str]:
    """The dashboard (token set) served by uvicorn in a thread; yields its base URL."""
    app = create_app(load_settings(nats_server.url), token=TOKEN)
    port = free_port("127.0.0.1")
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="naq-test-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the dashboard did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def worker(nats_server: EmbeddedServer) -> Iterator[naq.Worker]:
    """A worker with events on, in a thread, serving :data:`QUEUE`."""
    found = naq.Worker([QUEUE], nats_url=nats_server.url, concurrency=4, events=True)
    thread = threading.Thread(target=lambda: asyncio.run(found.run()), daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.request_stop()
        thread.join(15)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium (one per test: Playwright's objects belong to one event loop)."""
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(context: BrowserContext, base: str) -> Page:
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{base}/login")
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/")
    return page


@pytest.fixture
async def page(browser: Browser, dashboard: str, worker: naq.Worker) -> AsyncIterator[Page]:
    """A logged-in page at laptop width, confirmations accepted."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await log_in(context, dashboard)
    opened.on("dialog", lambda dialog: dialog.accept())
    try:
        yield opened
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> None:
    if os.environ.get("NAQ_DASHBOARD_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOCS_IMAGES / name), full_page=False)


async def live_ready(page: Page) -> None:
    """Wait for the page's first live update (its SSE stream is open)."""
    await page.wait_for_function(
        "document.querySelector('.plot figcaption') && "
        "!document.querySelector('.plot figcaption').textContent"
        ".includes('Collecting')"
    )


async def test_a_job_appears_and_completes_on_the_overview_without_reloading(
    page: Page, nats_server: EmbeddedServer
) -> None:
    await live_ready(page)
    await page.evaluate("window.__same_page = true")
    job = await naq.enqueue(dj.sleep_for, 0.4, queue_name=QUEUE, nats_url=nats_server.url)
    activity = page.locator("#activity")
    await expect(activity.locator(f"li.ev-started[data-job='{job.job_id}']")).to_be_visible()
    await expect(activity.locator(f"li.ev-completed[data-job='{job.job_id}']")).to_be_visible()
    await expect(page.locator(f"tr[data-queue='{QUEUE}']")).to_be_visible()
    assert await page.evaluate("window.__same_page") is True  # never reloaded
    await screenshot(page, "dashboard-overview.png")


async def test_job_data_is_shown_as_text_never_run(
    page: Page, dashboard: str, nats_server: EmbeddedServer
) -> None:
    url = nats_server.url
    done = await naq.enqueue(dj.echo, XSS, note=XSS, queue_name=QUEUE, nats_url=url)
    assert (await naq.fetch_job_result(done.job_id, timeout=10, nats_url=url))["args"] == [XSS]
    await page.goto(f"{dashboard}/jobs/{done.job_id}")
    await expect(page.locator("#job-result")).to_contain_text("<script>window.__xss = 1</script>")
    await expect(page.locator("#job-status")).to_have_text("completed")
    await screenshot(page, "dashboard-job.png")
    waiting = await naq.enqueue(dj.echo, XSS, queue_name=IDLE_QUEUE, nats_url=url)
    await page.fill("#search-job", waiting.job_id)
    await page.press("#search-job", "Enter")
    await expect(page.locator("#job-args")).to_contain_text("onerror='window.__xss = 1'")
    await expect(page.locator("#job-status")).to_have_text("pending")
    await page.goto(f"{dashboard}/queues/{IDLE_QUEUE}")
    await expect(page.get_by_text(waiting.job_id)).to_be_visible()
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert await page.locator("script:not([src])").count() == 0


async def test_requeue_a_dead_letter_from_the_page(
    page: Page, dashboard: str, nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    url = nats_server.url
    job = await naq.enqueue(dj.needs_flag, str(flag), queue_name=QUEUE, nats_url=url)
    with pytest.raises(naq.JobExecutionError):
        await naq.fetch_job_result(job.job_id, timeout=10, nats_url=url)
    row = page.locator("tr[data-entry]", has_text=job.job_id)
    deadline = time.monotonic() + 10
    await page.goto(f"{dashboard}/dlq")
    while await row.count() == 0 and time.monotonic() < deadline:  # the entry lands just after
        await asyncio.sleep(0.1)
        await page.reload()
    await expect(row).to_contain_text("flag file")
    await screenshot(page, "dashboard-dead-letters.png")
    flag.touch()
    await row.get_by_role("button", name="Requeue").click()
    await expect(page.locator("tr.done")).to_contain_text(f"requeued as job {job.job_id}")
    assert await naq.fetch_job_result(job.job_id, timeout=10, nats_url=url) == "flag found"


async def paused(url: str) -> bool:
    return {q.name: q for q in await naq.list_queues(nats_url=url)}[QUEUE].paused


async def test_pause_and_resume_a_queue_from_the_page(
    page: Page, dashboard: str, nats_server: EmbeddedServer
) -> None:
    await page.goto(f"{dashboard}/queues/{QUEUE}")
    await page.get_by_role("button", name="Pause queue").click()
    await expect(page.locator("#queue-paused")).to_have_text("paused")
    assert await paused(nats_server.url)
    await page.get_by_role("button", name="Resume queue").click()
    await expect(page.get_by_role("button", name="Pause queue")).to_be_visible()
    assert not await paused(nats_server.url)


async def test_an_action_without_the_csrf_token_or_the_login_is_refused(
    page: Page, browser: Browser, dashboard: str, nats_server: EmbeddedServer
) -> None:
    pause = f"{dashboard}/queues/{QUEUE}/pause"
    await page.goto(f"{dashboard}/queues/{QUEUE}")
    status = await page.evaluate(
        "url => fetch(url, {method: 'POST', credentials: 'same-origin'}).then(r => r.status)",
        pause,
    )
    assert status == 403  # logged in, but no X-CSRF-Token header
    stranger = await browser.new_context()
    try:
        refused = await stranger.request.post(pause, max_redirects=0)
        assert refused.status in (401, 403)
        other = await stranger.new_page()
        await other.goto(f"{dashboard}/dlq")
        assert other.url.startswith(f"{dashboard}/login")  # pages need the login
    finally:
        await stranger.close()
    assert not await paused(nats_server.url)


async def test_phone_width_has_no_sideways_scroll(browser: Browser, dashboard: str) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = await log_in(context, dashboard)
        for path in ("/", "/dlq", "/limits", "/schedules", "/workers", f"/queues/{QUEUE}"):
            await page.goto(f"{dashboard}{path}")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide at phone width"
    finally:
        await context.close()


async def test_disconnected_banner_comes_and_goes_with_nats(
    page: Page, nats_server: EmbeddedServer
) -> None:
    await live_ready(page)
    await expect(page.locator("#disconnected")).to_have_count(0)
    nats_server.stop()
    try:
        await expect(page.locator("#disconnected")).to_be_visible()
    finally:
        nats_server.start()
    await expect(page.locator("#disconnected")).to_have_count(0, timeout=20_000)
