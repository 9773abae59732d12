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
import orjson
import pytest
from playwright.async_api import Page, async_playwright, expect

from jetsched.dashboard.access import TOKEN_HEADER, Access
from jetsched.dashboard.app import Dashboard, serve
from jetsched.dashboard.live import MAX_STREAMS
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, JetschedApiError, Job, Tasks, chain, chord, step

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "test-operator-token-0123456789"
CHROMIUM = shutil.which("chromium")
FAST = {"base_ms": 20, "factor": 2.0, "jitter": 0.0}


@contextlib.asynccontextmanager
async def dashboard(nats_url: str, token: str | None, max_streams: int = MAX_STREAMS) -> AsyncIterator[str]:
    """The dashboard on a free loopback port; yields its URL."""
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    served = Dashboard(nats_url, access=Access(token), max_streams=max_streams)
    task = asyncio.create_task(serve(served, "127.0.0.1", 0, bound.set_result))
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


async def test_browser_sees_jobs_live_and_operates_jetsched(
    stack: Stack, client: Client, nats_server: NatsServer, tmp_path: Path
) -> None:
    """In Chromium: a submitted job moves to succeeded on screen without a reload; a dead job's retry is
    refused without the operator token and done with it, and its timeline names each attempt's worker;
    the operator pauses and resumes a queue, cancels a job, retries and purges dead letters by error type
    (one and in bulk) and drains a worker, each effect checked through the control API. One stack and
    one browser for all of it: a browser start costs more than the checks."""
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

    @tasks.task("ledger.post")
    async def post(job: Job) -> str:
        if job.attempt == 1:
            raise (LookupError if job.payload["missing"] else TimeoutError)(f"entry {job.payload['n']}")
        return "posted"

    async with (
        running_worker(tasks, nats_server.url, labels={"region": "eu"}) as worker,
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
            for attempt, outcome in (("1", "smtp.example.com:25 refused"), ("2", "succeeded")):
                row = page.locator(f'tr[data-attempt="{attempt}"]')
                await expect(row).to_contain_text(outcome)
                await expect(row).to_contain_text(worker.worker)  # each attempt names its worker
            await page.screenshot(path=str(shots / "job-timeline.png"), full_page=True)
            await show_other_views(page, url, shots)
            await show_a_workflow(page, url, client, shots)
            await pause_and_resume_a_queue(page, url, client, shots)
            await cancel_a_job(page, url, client)
            await act_on_dead_letters(page, url, client, shots)
            await drain_a_worker(page, url, client, nats_server.url, shots)
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


async def show_a_workflow(page: Page, url: str, client: Client, shots: Path) -> None:
    """A workflow's page draws its graph, every step in its state, and its steps' table."""
    flow = chain(
        step("fetch", "report.render", {"n": 0}),
        chord(
            [step("left", "report.render", {"n": 1}), step("right", "report.render", {"n": 2})],
            step("merge", "report.render", {"n": 3}),
        ),
    )
    reply = await client.submit_workflow(flow)

    async def done() -> bool:
        return (await client.workflow(reply.id)).state == "succeeded"

    await eventually(done, timeout=20, what="the workflow succeeded")
    await page.goto(f"{url}#/workflow/{reply.id}")
    for name in ("fetch", "left", "right", "merge"):
        node = page.locator(f'svg.graph g[data-step="{name}"]')
        await expect(node).to_contain_text("succeeded")
    await expect(page.locator("svg.graph line")).to_have_count(4)  # fetch→left, fetch→right, both→merge
    await expect(page.locator("main table")).to_contain_text("merge")
    await page.screenshot(path=str(shots / "workflow.png"), full_page=True)


async def queue_paused(client: Client, capability: str) -> bool:
    """Whether the queue is paused, as the queue settings API says (it follows the settings' bucket)."""
    settings = await client.request("jetsched.api.queues.list", {})
    return bool(settings["queues"].get(capability, {}).get("paused"))


async def queue_running(client: Client, capability: str) -> bool:
    return not await queue_paused(client, capability)


async def pause_and_resume_a_queue(page: Page, url: str, client: Client, shots: Path) -> None:
    """The operator pauses a queue and resumes it from the queues view; the queue settings follow."""
    await page.goto(f"{url}#/")
    row = page.locator('tr[data-capability="report.render"]')
    await row.locator('button[data-action="pause"]').click()
    await expect(page.locator("#flash-message")).to_contain_text("paused report.render")
    await eventually(lambda: queue_paused(client, "report.render"))
    await expect(row.locator('button[data-action="resume"]')).to_be_visible()
    await page.screenshot(path=str(shots / "queue-paused.png"), full_page=True)
    await row.locator('button[data-action="resume"]').click()
    await expect(page.locator("#flash-message")).to_contain_text("resumed report.render")
    await eventually(lambda: queue_running(client, "report.render"))
    await expect(row.locator('button[data-action="pause"]')).to_be_visible()


async def cancel_a_job(page: Page, url: str, client: Client) -> None:
    """The operator cancels a job that waits to run from its page."""
    job = await client.submit("report.render", {"later": True}, delay=3600)
    await page.goto(f"{url}#/job/{job.id}")
    await page.click('button[data-action="cancel"]')
    await expect(page.locator("#flash-message")).to_contain_text(f"cancelled {job.id}")
    assert (await client.get(job.id)).state == "cancelled"
    await expect(page.locator("#job-state")).to_have_text("cancelled")


async def act_on_dead_letters(page: Page, url: str, client: Client, shots: Path) -> None:
    """Dead letters filtered by error type: all of one type retried at once; of another type one purged
    from its row and the rest in bulk."""
    replies = await client.submit_many(
        "ledger.post", [{"n": n, "missing": n < 3} for n in range(5)], max_attempts=1, backoff=FAST
    )
    ids = [reply.id for reply in replies if not isinstance(reply, Exception)]
    assert [(await client.wait(job_id)).state for job_id in ids] == ["dead"] * 5
    lookups, timeouts = ids[:3], ids[3:]

    await page.goto(f"{url}#/dead")
    await page.fill("#dead-error-type", "LookupError")
    await page.click("#dead-filter")
    for job_id in lookups:
        await expect(page.locator(f'tr[data-id="{job_id}"]')).to_be_visible()
    await expect(page.locator(f'tr[data-id="{timeouts[0]}"]')).to_have_count(0)
    await page.screenshot(path=str(shots / "dead-filtered.png"), full_page=True)
    await page.click('button[data-action="retry all"]')
    await expect(page.locator("#flash-message")).to_contain_text("retried 3 dead letters of type LookupError")
    assert [(await client.wait(job_id)).state for job_id in lookups] == ["succeeded"] * 3

    # By address this time (the form was used above): a filtered view can be linked to.
    await page.goto(f"{url}#/dead?error_type=TimeoutError")
    await page.locator(f'tr[data-id="{timeouts[0]}"] button[data-action="purge"]').click()
    await expect(page.locator("#flash-message")).to_contain_text(f"purged {timeouts[0]}")
    await page.click('button[data-action="purge all"]')
    await expect(page.locator("#flash-message")).to_contain_text("purged 1 dead letter of type TimeoutError")
    for job_id in timeouts:
        with pytest.raises(JetschedApiError, match="not_found"):
            await client.get(job_id)


async def drain_a_worker(page: Page, url: str, client: Client, nats_url: str, shots: Path) -> None:
    """The operator drains a worker session: it announces draining, takes nothing new, finishes the job
    it holds and stops."""
    spare_tasks = Tasks()
    release = asyncio.Event()

    @spare_tasks.task("spare.hold")
    async def hold(job: Job) -> str:
        await release.wait()
        return "held"

    async def draining(session: str) -> bool:
        return any(w.session == session and w.draining for w in await client.workers())

    async with running_worker(spare_tasks, nats_url, concurrency=1, labels={"role": "spare"}) as spare:
        held = await client.submit("spare.hold")
        await eventually(lambda: spare.held, timeout=20)
        await page.goto(f"{url}#/workers")
        row = page.locator("tr", has_text=spare.session)
        await row.locator('button[data-action="drain"]').click()
        await expect(page.locator("#flash-message")).to_contain_text(f"draining {spare.session}")
        await eventually(lambda: draining(spare.session))
        await expect(row).to_contain_text("draining")
        await expect(row).to_contain_text("1/1")  # busy/slots: the job it holds
        await page.screenshot(path=str(shots / "worker-draining.png"), full_page=True)
        release.set()
        assert (await client.wait(held.id)).state == "succeeded"


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


async def test_live_event_streams_are_capped(stack: Stack, nats_server: NatsServer) -> None:
    """Beyond `max_streams` open event streams a new one is refused, 503 with a one-line reason, and a
    client that goes away frees its slot within seconds (not at the next keepalive write, 15 s on).
    (Every stream used to be served: each may hold ~100 KB while its client does not read.)"""

    async def open_stream(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
        response = await http.get(url + "api/events")
        if response.status == 200:
            assert await response.content.readline() == b"event: hello\n"
        return response

    async with dashboard(nats_server.url, None, max_streams=2) as url, aiohttp.ClientSession() as http:
        first, second = await open_stream(http, url), await open_stream(http, url)
        assert (first.status, second.status) == (200, 200)
        refused = await open_stream(http, url)
        assert refused.status == 503
        body = await refused.read()
        assert b"\n" not in body
        error = orjson.loads(body)["error"]
        assert error["code"] == "too_many_streams"
        assert "2 live event streams are open" in error["message"]
        first.close()  # the client goes away: its connection is closed

        async def admitted() -> aiohttp.ClientResponse | None:
            response = await open_stream(http, url)
            if response.status == 200:
                return response
            response.close()
            return None

        third = await eventually(admitted, timeout=5, what="a stream admitted in the freed slot")
        assert third is not None
        again = await open_stream(http, url)
        assert again.status == 503  # the slot was taken again
        for response in (again, second, third):
            response.close()
