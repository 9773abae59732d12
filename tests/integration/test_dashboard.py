"""The web dashboard end to end: the real services, a worker, the dashboard's HTTP server, and headless
Chromium driven by Playwright (Debian's `chromium`; Playwright's own browser download is not used).

Screenshots are kept under the test's tmp dir (the path is printed; `pytest -s` shows it), or under
`JETSCHED_ARTIFACTS` when set (CI can upload that directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect

from jetsched.dashboard.access import TOKEN_HEADER, Access
from jetsched.dashboard.app import Dashboard, serve
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.sdk import Client, Job, Tasks

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "test-operator-token-0123456789"
CHROMIUM = shutil.which("chromium")
FAST = {"base_ms": 20, "factor": 2.0, "jitter": 0.0}


@contextlib.asynccontextmanager
async def dashboard(nats_url: str, token: str | None) -> AsyncIterator[str]:
    """The dashboard on a free loopback port; yields its URL."""
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(Dashboard(nats_url, access=Access(token)), "127.0.0.1", 0, bound.set_result)
    )
    try:
        port = await asyncio.wait_for(asyncio.shield(bound), 20)
        yield f"http://127.0.0.1:{port}/"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def artefacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("JETSCHED_ARTIFACTS") or tmp_path) / "dashboard-screenshots"
    where.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots in {where}")
    return where


async def test_browser_sees_jobs_live_and_retries_a_dead_job(
    stack: Stack, client: Client, nats_server: NatsServer, tmp_path: Path
) -> None:
    """In Chromium: a submitted job moves to succeeded on screen without a reload; a dead job's retry is
    refused without the operator token and done with it."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `apt-get install -y chromium` (make install does it)")
    shots = artefacts(tmp_path)
    tasks = Tasks()

    @tasks.task("report.render")
    async def render(job: Job) -> dict[str, str]:
        return {"rendered": str(job.payload)}

    @tasks.task("email.send")
    async def send(job: Job) -> str:
        if job.attempt == 1:
            raise ConnectionRefusedError("smtp.example.com:25 refused the connection")
        return "sent"

    async with (
        running_worker(tasks, nats_server.url, labels={"region": "eu"}),
        dashboard(nats_server.url, TOKEN) as url,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(url)
            await expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            await expect(page.locator("#role")).to_have_text("read-only (token needed)")

            # Live: the job is scheduled when its page loads, and turns succeeded by itself (SSE).
            markup = "<img id=pwned src=x onerror=alert(1)>"
            job = await client.submit("report.render", {"name": markup}, delay=1.5)
            await page.goto(f"{url}#/job/{job.id}")
            await expect(page.locator("#job-state")).to_have_text("scheduled")
            await expect(page.locator("#job-state")).to_have_text("succeeded", timeout=15_000)
            await expect(page.locator("main")).to_contain_text(markup)  # shown as text, never as markup
            await expect(page.locator("#pwned")).to_have_count(0)
            await page.goto(f"{url}#/")
            more = [await client.submit("report.render", {"n": n}) for n in range(3)]
            for reply in more:
                item = page.locator(f'#recent li[data-id="{reply.id}"]').first
                await expect(item).to_contain_text("succeeded", timeout=15_000)
            await expect(page.locator('tr[data-capability="report.render"]')).to_be_visible()
            await page.screenshot(path=str(shots / "queues.png"), full_page=True)

            # A dead letter: refused without the token, retried with it.
            dead = await client.submit("email.send", {"to": "a@example.com"}, max_attempts=1, backoff=FAST)
            assert (await client.wait(dead.id)).state == "dead"
            await page.goto(f"{url}#/dead")
            row = page.locator(f'tr[data-id="{dead.id}"]')
            await expect(row).to_contain_text("ConnectionRefusedError")
            await row.locator('button[data-action="retry"]').click()
            await expect(page.locator("#flash-message")).to_contain_text("refused: forbidden")
            assert (await client.get(dead.id)).state == "dead"
            await page.screenshot(path=str(shots / "dead-refused.png"), full_page=True)

            await page.fill("#token", TOKEN)
            await page.click("#token-form button")
            await expect(page.locator("#role")).to_have_text("operator")
            await row.locator('button[data-action="retry"]').click()
            await expect(page.locator("#flash-message")).to_contain_text(f"retried {dead.id}")
            assert (await client.wait(dead.id)).state == "succeeded"

            await page.goto(f"{url}#/job/{dead.id}")
            await expect(page.locator("#job-state")).to_have_text("succeeded")
            await expect(page.locator('tr[data-attempt="1"]')).to_contain_text("smtp.example.com:25 refused")
            await expect(page.locator('tr[data-attempt="2"]')).to_contain_text("succeeded")
            await page.screenshot(path=str(shots / "job-timeline.png"), full_page=True)
            await show_other_views(page, url, shots)
        finally:
            await browser.close()


async def show_other_views(page: Page, url: str, shots: Path) -> None:
    """Workers, running jobs, schedules and workflows render from the live system."""
    await page.goto(f"{url}#/workers")
    await expect(page.locator("main")).to_contain_text("region=eu")
    await page.screenshot(path=str(shots / "workers.png"), full_page=True)
    for view in ("running", "jobs", "schedules", "workflows"):
        await page.goto(f"{url}#/{view}")
        await expect(page.locator("main h1")).to_be_visible()
        await expect(page.locator("#error")).to_have_count(0)


async def test_changes_need_the_token_and_a_same_origin_request(
    stack: Stack, nats_server: NatsServer
) -> None:
    """Reads are open; a change without the token, with a wrong one, from another origin or to another
    Host is refused; hostile parameters are refused before they reach NATS."""
    async with dashboard(nats_server.url, TOKEN) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "api/queues") as response:
            assert response.status == 200
            assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        pause = url + "api/queues/report.render/pause"
        for headers, status in (
            ({}, 403),
            ({TOKEN_HEADER: "x" * len(TOKEN)}, 403),
            ({TOKEN_HEADER: TOKEN, "Origin": "http://evil.example"}, 403),
            ({TOKEN_HEADER: TOKEN, "Host": "evil.example"}, 421),
        ):
            async with http.post(pause, headers=headers) as response:
                assert response.status == status, headers
        async with http.post(pause, headers={TOKEN_HEADER: TOKEN}) as response:
            assert response.status == 200
            assert (await response.json())["paused"] is True
        for path, field in (
            ("api/jobs/../../etc", None),
            ("api/jobs/not-a-ulid", "id"),
            ("api/jobs?state=bogus", "state"),
            ("api/jobs?limit=100000", "limit"),
            ("api/jobs?capability=a.*", "capability"),
            ("api/jobs?debug=1", "debug"),
            ("api/dead?error_type=%00", "error_type"),
            ("api/schedules/x%20y/preview", "id"),
        ):
            async with http.get(url + path) as response:
                assert response.status in (400, 404), path
                if field is not None:
                    assert (await response.json())["error"]["field"] == field, path
    async with (
        dashboard(nats_server.url, None) as url,
        aiohttp.ClientSession() as http,
        http.post(url + "api/queues/report.render/resume", headers={TOKEN_HEADER: TOKEN}) as response,
    ):
        assert response.status == 403
        assert "read-only" in (await response.json())["error"]["message"]
