"""Schedules that start workflows, through the real services: one workflow per nominal fire time."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any

from jetsched.core.schedules import fire_job_id
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, Job, JobInfo, Tasks, chain, step

from .conftest import ms


def flow_tasks(seen: list[tuple[str, int]], parents: list[Any]) -> Tasks:
    tasks = Tasks()

    @tasks.task("first")
    async def first(job: Job) -> int:
        seen.append((job.id, job.attempt))
        return 7

    @tasks.task("second")
    async def second(job: Job) -> None:
        seen.append((job.id, job.attempt))
        parents.append(job.parents)

    return tasks


async def test_workflow_schedule_starts_one_workflow_per_nominal_time(nats_server: NatsServer) -> None:
    """Two replicas of every service race for every fire of a per-second schedule whose template is a
    two-step chain: each nominal time starts exactly one workflow (under the fire's id), each step runs
    once, and the second step gets the first's result."""
    seen: list[tuple[str, int]] = []
    parents: list[Any] = []
    flow = chain(step("a", "first"), step("b", "second"))
    async with (
        Stack(nats_server.url, copies=2),
        Client(nats_server.url) as client,
        running_worker(flow_tasks(seen, parents), nats_server.url),
    ):
        created = await client.create_workflow_schedule("flows", flow, every=1.0)
        assert created.next_fire is not None
        await eventually(lambda: len(parents) >= 4, timeout=20, what="four workflows finished")
        await client.schedule("flows", "pause")
        record = await client.schedule("flows")
        jobs = [j for j in (await client.list(limit=1000)).jobs if j.schedule_id == "flows"]
        by_fire: dict[int, list[JobInfo]] = defaultdict(list)
        for job in jobs:
            by_fire[ms(job.fire_at)].append(job)
        nominal = sorted(by_fire)
        views = {t: await client.workflow(fire_job_id("flows", t)) for t in nominal}
        await eventually(
            lambda: len(parents) >= len(nominal), timeout=20, what="every fired workflow finished"
        )
    assert [b - a for a, b in itertools.pairwise(nominal)] == [1000] * (len(nominal) - 1), nominal
    assert all(len(found) == 2 for found in by_fire.values())
    assert {v.id for v in views.values()} == {fire_job_id("flows", t) for t in nominal}
    assert max(Counter(job_id for job_id, _ in seen).values()) == 1
    assert len(seen) <= 2 * len(nominal)
    assert all(p == {"a": 7} for p in parents)
    assert record.fired == len(nominal)
    assert [e.job_id for e in record.history][-len(nominal) :] == [fire_job_id("flows", t) for t in nominal]


async def test_workflow_schedule_overlap_skip(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """With overlap=skip, a fire while the previous fire's workflow still runs is recorded as missed."""
    seen: list[tuple[str, int]] = []
    parents: list[Any] = []
    # A second step nobody runs keeps the first fire's workflow running.
    flow = chain(step("a", "first"), step("b", "nobody"))
    async with running_worker(flow_tasks(seen, parents), nats_server.url):
        await client.create_workflow_schedule("busy", flow, every=1.0, overlap="skip")

        async def missed() -> bool:
            return (await client.schedule("busy")).missed >= 2

        await eventually(missed, timeout=15, what="fires skipped while the first workflow runs")
        await client.schedule("busy", "pause")
        record = await client.schedule("busy")
    assert record.fired == 1
    assert all("overlap=skip" in e.missed for e in record.history if e.missed)
    assert len(seen) == 1
