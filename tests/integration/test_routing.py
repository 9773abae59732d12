"""Routing and queue control: labels, paused queues, draining workers, priority across dispatcher replicas."""

from __future__ import annotations

import asyncio

import pytest

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, Job, Tasks, Worker


def recorder(seen: list[tuple[str, str]], name: str) -> Tasks:
    tasks = Tasks()

    @tasks.task("render")
    async def render(job: Job) -> str:
        seen.append((job.id, name))
        return name

    return tasks


async def test_labels_route_and_do_not_block(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A job needing gpu=a100 waits (saying why) without blocking lower priorities; an a100 worker runs it."""
    seen: list[tuple[str, str]] = []
    async with running_worker(recorder(seen, "cpu"), nats_server.url, labels={"gpu": "none"}):
        gpu_job = await client.submit("render", priority=9, labels={"gpu": "a100"})
        plain = await client.submit("render", priority=1)
        assert (await client.wait(plain.id)).result == "cpu"
        view = await client.get(gpu_job.id)
        assert view.state == "ready"
        assert view.waiting == "no live worker with capability 'render' and labels gpu=a100"
        async with running_worker(
            recorder(seen, "a100"), nats_server.url, labels={"gpu": "a100", "zone": "eu"}
        ):
            assert (await client.wait(gpu_job.id)).result == "a100"


async def test_pause_and_resume(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A paused queue keeps its jobs queued (and says so); resumed, they run."""
    seen: list[tuple[str, str]] = []
    async with running_worker(recorder(seen, "w"), nats_server.url):
        await client.pause("render")
        reply = await client.submit("render")
        await eventually(lambda: _waiting(client, reply.id, "paused"), what="job reported paused")
        await asyncio.sleep(0.3)  # nothing may run while paused
        assert seen == []
        await client.pause("render", paused=False)
        assert (await client.wait(reply.id)).state == "succeeded"


async def test_drain_worker_from_the_api(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Draining a worker through the API makes it finish and exit; its queue waits for another worker."""
    seen: list[tuple[str, str]] = []
    worker = Worker(recorder(seen, "w"), nats_url=nats_server.url)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: _listed(client, worker.session), what="worker listed")
    assert (await client.drain(worker.session)).draining is True
    await asyncio.wait_for(running, 20)
    reply = await client.submit("render")
    await asyncio.sleep(0.3)
    assert (await client.get(reply.id)).state == "ready"


@pytest.mark.parametrize("replicas", [1, 2, 3])
async def test_priority_order_with_dispatcher_replicas(nats_server: NatsServer, replicas: int) -> None:
    """With 1, 2 or 3 dispatcher replicas and a one-slot worker, jobs run in priority order."""
    async with Stack(nats_server.url, copies=replicas), Client(nats_server.url) as client:
        tasks = Tasks()
        order: list[int] = []
        gate = asyncio.Event()

        @tasks.task("p")
        async def p(job: Job) -> None:
            if job.payload == "gate":
                await gate.wait()
            else:
                order.append(job.payload)

        async with running_worker(tasks, nats_server.url, concurrency=1):
            first = await client.submit("p", "gate")
            await eventually(lambda: _state(client, first.id, "running"), timeout=10, what="gate running")
            replies = [await client.submit("p", n, priority=n) for n in (3, 7, 1, 9, 0, 5, 8, 2)]
            gate.set()
            for reply in replies:
                await client.wait(reply.id)
        assert order == [9, 8, 7, 5, 3, 2, 1, 0]


async def _waiting(client: Client, job_id: str, word: str) -> bool:
    return word in ((await client.get(job_id)).waiting or "")


async def _state(client: Client, job_id: str, state: str) -> bool:
    return bool((await client.get(job_id)).state == state)


async def _listed(client: Client, session: str) -> bool:
    return any(w.session == session for w in await client.workers())


async def test_per_key_cap_holds_across_workers(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """At most 2 running jobs per tenant across two workers; tenants take turns."""
    await client.configure_queue("tenant.work", max_running_per_key=2)
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    tasks = Tasks()

    @tasks.task("tenant.work")
    async def work(job: Job) -> None:
        tenant = job.payload
        running[tenant] = running.get(tenant, 0) + 1
        peak[tenant] = max(peak.get(tenant, 0), running[tenant])
        await asyncio.sleep(0.05)
        running[tenant] -= 1

    async with (
        running_worker(tasks, nats_server.url, concurrency=4),
        running_worker(tasks, nats_server.url, concurrency=4),
    ):
        replies = [
            await client.submit("tenant.work", tenant, concurrency_key=f"tenant={tenant}")
            for tenant in ["acme"] * 12 + ["tiny"] * 4
        ]
        for reply in replies:
            await client.wait(reply.id)
    assert peak == {"acme": 2, "tiny": 2}


async def test_load_follows_capacity(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Under load a 16-slot worker runs about eight times the jobs of a 2-slot one."""
    done: dict[str, int] = {"big": 0, "small": 0}

    def sized(name: str) -> Tasks:
        tasks = Tasks()

        @tasks.task("sized")
        async def sized_job(job: Job) -> None:
            await asyncio.sleep(0.02)
            done[name] += 1

        return tasks

    async with (
        running_worker(sized("big"), nats_server.url, concurrency=16),
        running_worker(sized("small"), nats_server.url, concurrency=2),
    ):
        await eventually(lambda: _capable_sessions(client, "sized", 2), what="both workers announced")
        replies = await asyncio.gather(*(client.submit("sized") for _ in range(360)))
        for reply in replies:
            await client.wait(reply.id)
    ratio = done["big"] / done["small"]
    print(f"16-slot / 2-slot work ratio: {ratio:.1f} ({done})")
    assert 5 <= ratio <= 12


async def _capable_sessions(client: Client, capability: str, n: int) -> bool:
    return sum(capability in w.capabilities for w in await client.workers()) == n
