"""Poison pills end dead; forged, stale and malformed input on every subject changes nothing."""

from __future__ import annotations

import asyncio

import nats
import orjson
import pytest

from jetsched.core import subjects
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.reaper.service import ReaperService
from jetsched.sdk import Client, Job, JobInfo, Tasks


@pytest.mark.slow
async def test_poison_pill_ends_dead(fleet: Fleet) -> None:
    """A job that kills every worker that runs it is dead after max_attempts, with each loss recorded."""
    fleet.start_services()
    async with Client(fleet.url, timeout=20) as client:
        reply = await client.submit("probe.poison", max_attempts=3, backoff={"base_ms": 0})

        async def respawn_until_final() -> JobInfo:
            while True:
                worker = fleet.worker()
                while worker.alive():
                    view = await client.get(reply.id)
                    if view.state == "dead":
                        return view
                    await asyncio.sleep(0.05)

        view = await asyncio.wait_for(respawn_until_final(), 60)
    assert [e.kind for e in view.errors] == ["lost", "lost", "lost"]
    assert len(fleet.started(reply.id)) == 3


async def test_forged_stale_and_malformed_input(stack: Stack, nats_server: NatsServer) -> None:
    """Garbage and forgeries on outcome, heartbeat, API and worker subjects leave every record intact."""
    tasks = Tasks()
    release = asyncio.Event()

    @tasks.task("held")
    async def held(job: Job) -> str:
        await release.wait()
        return "genuine"

    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    async with Client(nats_server.url) as client, running_worker(tasks, nats_server.url) as worker:
        reply = await client.submit("held")
        await eventually(lambda: _state(client, reply.id, "running"), what="job running")
        before = await client.get(reply.id)

        outcome = subjects.outcome("held", reply.id)
        forged = {
            "id": reply.id,
            "attempt": 1,
            "token": "guessed",
            "session": worker.session,
            "status": "succeeded",
            "result": "forged",
            "finished_at_ms": 0,
        }
        lease = (await client.request(subjects.api("jobs.get"), {"id": reply.id}))["job"]["lease"]
        assert "token" not in lease, "the lease token is readable by clients"
        stale = {**forged, "attempt": 0}
        for body in (
            b'{"id": "trunc',
            b"[]",
            b'{"id": 5}',
            orjson.dumps(forged),
            orjson.dumps(stale),
            orjson.dumps({**forged, "id": "NOSUCHJOB"}),
        ):
            await js.publish(outcome, body)
        for body in (
            b"",
            b"{",
            b'{"session": 1}',
            orjson.dumps(
                {"worker": "x", "session": "s", "capabilities": ["a.*"], "concurrency": 1, "interval_ms": 500}
            ),
        ):
            await nc.publish(subjects.heartbeat("evil"), body)
        for name in ("jobs.get", "jobs.list", "jobs.cancel", "dead.retry", "dead.purge", "stats"):
            for body in (b"{", b"[1]", b'{"id": ["x"]}', b"\xff" * 100):
                answer = orjson.loads((await nc.request(subjects.api(name), body, timeout=5)).data)
                assert name == "stats" or "error" in answer, (name, body, answer)
        await nc.publish(subjects.work("held", worker.session), b"{garbage")
        await nc.publish(subjects.control(worker.session), b'{"op": "explode"}')

        reapers = [s for s in stack.services if isinstance(s, ReaperService)]
        await eventually(lambda: reapers[0].stale_reports >= 2, what="forged and stale reports rejected")
        assert await client.get(reply.id) == before
        release.set()
        record = await client.wait(reply.id)
    await nc.close()
    assert (record.state, record.result, record.attempt) == ("succeeded", "genuine", 1)


async def _state(client: Client, job_id: str, state: str) -> bool:
    return bool((await client.get(job_id)).state == state)
