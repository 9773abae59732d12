"""Two replicas of every service at once: nothing lost, nothing run twice without a failure to explain it."""

from __future__ import annotations

import asyncio

from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.sdk import Client, Job, Tasks

from .conftest import Executions


async def test_two_of_everything(nats_server: NatsServer, executions: Executions) -> None:
    """300 jobs (a third failing once, some delayed) through 2× every service and 2 workers."""
    tasks = Tasks()

    @tasks.task("r")
    async def r(job: Job) -> int:
        first_run = job.id not in executions.per_job()
        executions.record(job.id, job.attempt)
        await asyncio.sleep(0.001)
        if job.payload % 3 == 0 and first_run:
            raise RuntimeError("first run fails")
        return int(job.payload)

    async with (
        Stack(nats_server.url, copies=2),
        Client(nats_server.url) as client,
        running_worker(tasks, nats_server.url, concurrency=8),
        running_worker(tasks, nats_server.url, concurrency=8),
    ):
        replies = await asyncio.gather(
            *(
                client.submit(
                    "r", n, delay=0.05 if n % 5 == 0 else None, backoff={"base_ms": 10, "jitter": 0}
                )
                for n in range(300)
            )
        )
        records = [await client.wait(reply.id, timeout=60) for reply in replies]

    assert all(record.state == "succeeded" for record in records)
    runs = executions.per_job()
    expected = {record.id: 2 if record.result % 3 == 0 else 1 for record in records}
    assert dict(runs) == expected
    assert len(set(executions.runs)) == len(executions.runs), "an attempt ran twice"
    for record in records:
        # Attempts beyond the runs are claims handed back unrun (two dispatchers racing for one slot).
        assert record.attempt == runs[record.id] + record.releases
