"""The deployed 3-node cluster configuration, on loopback, with every stream and bucket at R3."""

from __future__ import annotations

import asyncio

import nats
import pytest

from jetsched.core import subjects
from jetsched.devkit.cluster import NatsCluster
from jetsched.devkit.stack import Stack, running_worker
from jetsched.sdk import Client, Job, Tasks

pytestmark = pytest.mark.slow


async def test_end_to_end_on_r3(cluster: NatsCluster) -> None:
    """Jobs run end to end on the cluster, stored with three replicas."""
    tasks = Tasks()

    @tasks.task("c")
    async def c(job: Job) -> int:
        if job.attempt == 1 and job.payload % 4 == 0:
            raise RuntimeError("retry me")
        return int(job.payload) * 2

    async with (
        Stack(cluster.urls, replicas=3),
        Client(cluster.urls, timeout=20) as client,
        running_worker(tasks, cluster.urls, concurrency=8),
    ):
        replies = await asyncio.gather(
            *(
                client.submit("c", n, delay=0.1 if n % 3 == 0 else None, backoff={"base_ms": 10})
                for n in range(40)
            )
        )
        records = [await client.wait(r.id, timeout=60) for r in replies]
    assert [r.result for r in records] == [n * 2 for n in range(40)]

    nc = await nats.connect(cluster.urls.split(","))
    js = nc.jetstream()
    for stream in (subjects.kv_stream(subjects.JOBS_BUCKET), subjects.OUTCOMES_STREAM):
        info = await js.stream_info(stream)
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2
    await nc.close()
