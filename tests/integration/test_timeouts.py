"""Deadlines: start deadlines, heartbeat timeouts, and the reaper's timeout backstop."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import nats
import orjson
from nats.aio.msg import Msg

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.sdk import Client, Job, Tasks


async def test_unstarted_job_expires(stack: Stack, client: Client) -> None:
    """A job that cannot start before its deadline dies as expired instead of running late."""
    now = await client.submit("nobody.home", expires_in=0.2)
    later = await client.submit("nobody.home", delay=0.2, expires_in=0.2)
    first, second = await client.wait(now.id, timeout=10), await client.wait(later.id, timeout=10)
    for record in (first, second):
        assert (record.state, record.errors[0].kind) == ("dead", "expired")
        assert record.finished_at
        assert record.expires_at
        assert record.finished_at > record.expires_at
    assert second.expires_at == second.run_at + timedelta(milliseconds=200)


async def test_deadline_does_not_touch_started_jobs(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A job that started in time finishes normally however long it runs."""
    tasks = Tasks()

    @tasks.task("slowish")
    async def slowish(job: Job) -> str:
        await asyncio.sleep(0.4)
        return "done"

    async with running_worker(tasks, nats_server.url):
        record = await client.wait((await client.submit("slowish", expires_in=0.2)).id)
    assert (record.state, record.result) == ("succeeded", "done")


async def test_heartbeat_timeout(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Handlers that keep calling job.heartbeat() run on; one that goes quiet times out."""
    tasks = Tasks()

    @tasks.task("chatty")
    async def chatty(job: Job) -> str:
        for _ in range(8):
            job.heartbeat()
            await asyncio.sleep(0.05)
        return "alive"

    @tasks.task("chatty.sync")
    def chatty_sync(job: Job) -> str:
        for _ in range(8):
            job.heartbeat()
            time.sleep(0.05)
        return "alive"

    @tasks.task("quiet")
    async def quiet(job: Job) -> None:
        await asyncio.sleep(5)

    async with running_worker(tasks, nats_server.url):
        ids = [
            (await client.submit(cap, heartbeat_timeout=0.15, max_attempts=1)).id
            for cap in ("chatty", "chatty.sync", "quiet")
        ]
        records = [await client.wait(i) for i in ids]
    assert [r.state for r in records] == ["succeeded", "succeeded", "dead"]
    assert (records[2].errors[0].kind, records[2].errors[0].type) == (
        "timeout",
        "HeartbeatTimeout",
    )


async def test_reaper_times_out_a_worker_that_never_reports(stack: Stack, nats_server: NatsServer) -> None:
    """A live worker that ignores its job's timeout is stopped by the reaper; the attempt fails as timed out."""
    nc = await nats.connect(nats_server.url)
    controls: list[dict[str, object]] = []
    held: list[list[object]] = []

    async def on_work(msg: Msg) -> None:
        work = orjson.loads(msg.data)
        held.append([work["id"], work["attempt"]])

    async def on_control(msg: Msg) -> None:
        control = orjson.loads(msg.data)
        controls.append(control)
        held.remove([control["id"], control["attempt"]])

    async def beat() -> None:
        while True:
            heartbeat = {
                "worker": "deaf",
                "session": "deaf1",
                "capabilities": ["deaf"],
                "concurrency": 1,
                "running": held,
                "interval_ms": 200,
            }
            await nc.publish("jetsched.hb.deaf1", orjson.dumps(heartbeat))
            await asyncio.sleep(0.2)

    await nc.subscribe("jetsched.work.deaf.deaf1", cb=on_work)
    await nc.subscribe("jetsched.control.deaf1", cb=on_control)
    beating = asyncio.create_task(beat())
    try:
        async with Client(nats_server.url) as client:
            reply = await client.submit("deaf", timeout=0.3, max_attempts=1)
            record = await client.wait(reply.id, timeout=15)
    finally:
        beating.cancel()
        await nc.close()
    assert (record.state, record.errors[0].kind) == ("dead", "timeout")
    assert "reaper" in record.errors[0].message
    assert controls == [{"op": "cancel", "id": reply.id, "attempt": 1}]
