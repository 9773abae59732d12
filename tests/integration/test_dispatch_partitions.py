"""One hot capability dispatched by two dispatcher replicas at once, each partition in strict priority
order (`dispatcher/partitions.py`), and a killed replica's partition taken over."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import defaultdict

import pytest

from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.dispatcher import partitions
from jetsched.dispatcher.service import DEFAULT_SHARDS
from jetsched.sdk import Client

pytestmark = [pytest.mark.slow, pytest.mark.serial]

HOT = "probe.sleep"
SPLIT = {"JETSCHED_DISPATCH_PARTITIONS": f"{HOT}=2"}


async def owners(fleet: Fleet) -> set[int]:
    """The pids of the dispatchers holding the hot capability's two partitions."""
    found = set()
    for number in range(2):
        proc = await fleet.lease_owner("dispatcher", partitions.shard(HOT, number, 2, DEFAULT_SHARDS))
        assert proc.pid is not None
        found.add(proc.pid)
    return found


async def test_a_hot_capability_is_dispatched_by_two_replicas_each_partition_in_order(fleet: Fleet) -> None:
    for name in procs.SERVICES:
        fleet.service(name, env=SPLIT if name == "dispatcher" else None)
    fleet.service("dispatcher", env=SPLIT)
    async with Client(fleet.url, timeout=20) as client:
        await client.stats()

        async def split() -> bool:
            return len(await owners(fleet)) == 2

        await eventually(split, timeout=30, what="the two partitions leased by different replicas")
        rng = random.Random(11)
        replies = [await client.submit(HOT, 0.01, priority=rng.randrange(10)) for _ in range(120)]
        jobs = [await client.get(r.id) for r in replies]
        priority = {j.id: j.priority for j in jobs}
        # One slot per partition: each partition's jobs run one after another, in its owner's order.
        fleet.worker("--concurrency", "2")
        for reply in replies:
            assert (await client.wait(reply.id, timeout=60)).state == "succeeded"

    starts = [r for r in fleet.runs() if r.event == "start"]
    assert sorted(r.job_id for r in starts) == sorted(priority)  # each ran once
    by_partition: dict[str, list[int]] = defaultdict(list)
    for run in sorted(starts, key=lambda r: r.at):
        by_partition[partitions.queue_of(HOT, run.job_id, 2)].append(priority[run.job_id])
    assert set(by_partition) == {f"{HOT}#0", f"{HOT}#1"}
    for order in by_partition.values():
        assert order == sorted(order, reverse=True), "a partition started a lower priority first"


async def test_a_dead_replicas_partition_moves(fleet: Fleet) -> None:
    """kill -9 one of the two dispatchers with a backlog in both partitions: the other takes its
    partition within a lease TTL, and every job runs once."""
    for name in procs.SERVICES:
        fleet.service(name, env=SPLIT if name == "dispatcher" else None)
    second = fleet.service("dispatcher", env=SPLIT)
    async with Client(fleet.url, timeout=20) as client:
        await client.stats()

        async def split() -> bool:
            return len(await owners(fleet)) == 2

        await eventually(split, timeout=30, what="the two partitions leased by different replicas")
        fleet.worker("--concurrency", "4")
        replies = await asyncio.gather(*(client.submit(HOT, 0.02) for _ in range(200)))
        await asyncio.sleep(0.5)
        assert second.popen is not None
        second.popen.send_signal(signal.SIGKILL)
        for reply in replies:
            assert (await client.wait(reply.id, timeout=60)).state == "succeeded"
        assert len(await owners(fleet)) == 1
    starts = [r for r in fleet.runs() if r.event == "start"]
    assert sorted(r.job_id for r in starts) == sorted(r.id for r in replies)
