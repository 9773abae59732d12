"""Succeeded and cancelled jobs expire after the retention; dead letters stay until purged."""

from __future__ import annotations

import pytest

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, JetschedApiError, Job, Tasks


async def test_finished_jobs_expire_dead_letters_stay(nats_server: NatsServer) -> None:
    """With a 1 s retention, a succeeded and a cancelled job vanish (and leave the listing); a dead one stays."""
    tasks = Tasks()

    @tasks.task("r")
    async def r(job: Job) -> None:
        if job.payload == "fail":
            raise ValueError("no")

    async with (
        Stack(nats_server.url, retention_s=1),
        Client(nats_server.url) as client,
        running_worker(tasks, nats_server.url),
    ):
        ok = await client.submit("r", "ok")
        dead = await client.submit("r", "fail", max_attempts=1)
        cancelled = await client.submit("r", delay=60)
        await client.cancel(cancelled.id)
        assert (await client.wait(ok.id)).state == "succeeded"
        assert (await client.wait(dead.id)).state == "dead"

        async def gone(job_id: str) -> bool:
            try:
                await client.get(job_id)
            except JetschedApiError as exc:
                return exc.code == "not_found"
            return False

        await eventually(lambda: gone(ok.id), timeout=10, what="succeeded job expired")
        await eventually(lambda: gone(cancelled.id), timeout=10, what="cancelled job expired")
        assert (await client.get(dead.id)).state == "dead"
        listed = {j.id for j in (await client.list()).jobs}
        assert listed == {dead.id}
        with pytest.raises(JetschedApiError, match="not_found"):
            await client.get(ok.id)


async def test_key_of_an_expired_job_starts_a_new_one(nats_server: NatsServer) -> None:
    """An idempotency key lives as long as its job: after the job expired, the key makes a new job."""
    tasks = Tasks()

    @tasks.task("k")
    async def k(job: Job) -> None: ...

    async with (
        Stack(nats_server.url, retention_s=1),
        Client(nats_server.url) as client,
        running_worker(tasks, nats_server.url),
    ):
        first = await client.submit("k", key="daily-report")
        await client.wait(first.id)
        assert (await client.submit("k", key="daily-report")).duplicate

        async def renewed() -> bool:
            reply = await client.submit("k", key="daily-report")
            return not reply.duplicate and reply.id != first.id

        await eventually(renewed, timeout=10, what="the key made a new job after expiry")
