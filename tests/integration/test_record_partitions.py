"""Job records spread over several buckets (`JETSCHED_RECORD_PARTITIONS`), each its own stream: the
whole life of jobs, delayed jobs, keyed submits, cancels and workflows works across them, a restart
replays every partition, and a process configured with another count refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from jetsched.bus import topology
from jetsched.bus.connect import connect
from jetsched.bus.records import Records, Store
from jetsched.bus.workflows import Workflows
from jetsched.core import steps, subjects
from jetsched.core import workflows as wf
from jetsched.core.ids import new_ulid
from jetsched.core.shards import shard_of
from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, chain, step

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from nats.js import JetStreamContext

    from jetsched.bus.direct import Connection

pytestmark = pytest.mark.slow

PARTITIONS = 3
SPREAD = {
    "JETSCHED_RECORD_PARTITIONS": str(PARTITIONS),
    "JETSCHED_DISPATCH_PARTITIONS": f"probe.sleep={PARTITIONS}",
}


async def test_jobs_live_across_partitions_and_survive_a_restart(fleet: Fleet) -> None:
    services = [fleet.service(name, env=SPREAD) for name in procs.SERVICES]
    async with Client(fleet.url, timeout=20) as client:
        await client.stats()
        now = [await client.submit("probe.sleep", 0.01) for _ in range(60)]
        later = [await client.submit("probe.sleep", 0, delay=1.0) for _ in range(15)]
        keyed = await client.submit("probe.sleep", 0, key="once")
        again = await client.submit("probe.sleep", 0, key="once")
        assert (again.id, again.duplicate) == (keyed.id, True)
        doomed = await client.submit("probe.nobody")
        await client.cancel(doomed.id)
        flow = await client.submit_workflow(chain(*(step(f"s{n}", "probe.sleep", 0) for n in range(6))))
        ids = [r.id for r in (*now, *later, keyed)]
        assert set(Counter(shard_of(i, PARTITIONS) for i in ids)) == set(range(PARTITIONS))

        # Every service killed and restarted before any worker: their views come back from all three.
        for proc in services:
            proc.kill()
            proc.start()
        await client.stats()
        fleet.worker("--concurrency", "6")
        for job_id in ids:
            assert (await client.wait(job_id, timeout=60)).state == "succeeded"
        assert (await client.get(doomed.id)).state == "cancelled"

        async def finished() -> bool:
            return (await client.workflow(flow.id)).state == "succeeded"

        await eventually(finished, timeout=60, what="the workflow across partitions")
        listed: set[str] = set()
        after = None
        while True:  # live jobs first, then history's
            page = await client.list(limit=100, after=after)
            listed |= {j.id for j in page.jobs}
            if page.next is None:
                break
            after = page.next
        assert set(ids) <= listed
    starts = Counter(r.job_id for r in fleet.runs() if r.event == "start")
    assert all(starts[i] == 1 for i in ids)

    nc = await connect(fleet.url, "test")
    try:
        records = Records.open(nc, partitions=PARTITIONS)
        for job_id in ids[:10]:
            record, _ = await records.get(job_id)  # from its partition's bucket, or from history
            assert record.id == job_id
        assert [s.bucket for s in records.stores] == ["jobs", "jobs-1", "jobs-2"]
    finally:
        await nc.close()


async def test_a_service_with_another_partition_count_refuses_to_start(fleet: Fleet) -> None:
    fleet.service("intake", env=SPREAD)
    async with Client(fleet.url, timeout=20) as client:
        await client.stats()
    odd = fleet.service("dispatcher", env={"JETSCHED_RECORD_PARTITIONS": "1"})

    async def exited() -> bool:
        return not odd.alive()

    await eventually(exited, timeout=30, what="the misconfigured dispatcher to exit")
    assert odd.popen is not None
    assert odd.popen.returncode not in (0, None)
    assert (
        "the job records are in 3 partition(s); this process was started with 1" in odd.log_path.read_text()
    )


async def test_two_processes_starting_at_once_with_different_counts_do_not_both_run(fleet: Fleet) -> None:
    """Both look before either created the buckets; the first creates them with its count. The second's
    create then finds them with another configuration: it must refuse, not update the count."""
    nc = await connect(fleet.url, "test")
    try:
        js = nc.jetstream()
        await topology.declare(js, replicas=1, partitions=1)
        counted = next(c for c in topology.streams(1, partitions=3) if c.metadata)
        with pytest.raises(topology.PartitionsMismatch, match="in 1 partition"):
            await topology._ensure_stream(js, counted, 3)
        assert await topology.record_partitions(js) == 1
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def two_reapers(fleet: Fleet) -> AsyncIterator[tuple[Client, Connection]]:
    """The services with the records in four partitions and two reapers to split them; a client once
    intake answers, and a connection of the test's own."""
    for name in ("intake", "timer", "dispatcher", "reaper", "reaper"):
        fleet.service(name, env={"JETSCHED_RECORD_PARTITIONS": "4"})
    nc = await connect(fleet.url, "test")
    try:
        async with Client(fleet.url, timeout=20) as client:
            await client.stats()
            yield client, nc
    finally:
        await nc.close()


async def consumers(js: JetStreamContext, partition: int) -> int:
    """The feeds following a partition: its consumers with a live subscriber (a killed process's stay
    listed, unbound, until their inactivity threshold)."""
    found = await js.consumers_info(subjects.kv_stream(subjects.jobs_bucket(partition)))
    return sum(1 for info in found if info.push_bound)


async def test_reapers_split_the_partitions_and_a_dead_ones_move(fleet: Fleet) -> None:
    """With the records in partitions, each reaper replica follows only the partitions it leases — a
    workflow's steps are in its own — and a killed one's partitions move to the other, whose replay of
    them finishes every workflow and retires every job; restarted, it takes half of them back."""
    async with two_reapers(fleet) as (client, nc):
        js = nc.jetstream()
        # Intake and the dispatcher follow every partition; the reapers one each between them.
        owners = [await fleet.lease_owner("reaper.records", p) for p in range(4)]

        async def split() -> bool:
            owners[:] = [await fleet.lease_owner("reaper.records", p) for p in range(4)]
            counts = [await consumers(js, p) for p in range(4)]
            return len({o.pid for o in owners}) == 2 and counts == [3, 3, 3, 3]

        await eventually(split, timeout=30, what="two reapers following two partitions each")
        flows = [
            await client.submit_workflow(chain(*(step(f"s{n}", "probe.sleep", 0.02) for n in range(4))))
            for _ in range(8)
        ]
        jobs = [await client.submit("probe.sleep", 0.02) for _ in range(40)]
        assert {shard_of(f.id, 4) for f in flows} | {shard_of(j.id, 4) for j in jobs} == {0, 1, 2, 3}
        fleet.worker("--concurrency", "4")
        await client.wait(jobs[0].id, timeout=30)
        owners[0].kill()  # kill -9, mid-way through the workflows

        async def taken_over() -> bool:
            survivors = {(await fleet.lease_owner("reaper.records", p)).pid for p in range(4)}
            return len(survivors) == 1 and [await consumers(js, p) for p in range(4)] == [3, 3, 3, 3]

        await eventually(taken_over, timeout=30, what="the survivor to own and follow every partition")

        async def finished() -> bool:
            states = [(await client.workflow(f.id)).state for f in flows]
            return all(s == "succeeded" for s in states)

        await eventually(finished, timeout=60, what="every workflow to finish")
        owners[0].start()  # back: the survivor hands over half its partitions, mid-way through more
        flows += [
            await client.submit_workflow(chain(*(step(f"s{n}", "probe.sleep", 0.02) for n in range(4))))
            for _ in range(8)
        ]
        await eventually(split, timeout=30, what="the partitions split again")
        await eventually(finished, timeout=60, what="every workflow to finish")
        for job in jobs:
            assert (await client.wait(job.id, timeout=30)).state == "succeeded"
        records = Records.open(nc, partitions=4)
        placed = {f.id: [s.job_id for s in (await client.workflow(f.id)).steps.values()] for f in flows}
        assert all(shard_of(s, 4) == shard_of(f, 4) for f, ids in placed.items() for s in ids)
        step_ids = [s for ids in placed.values() for s in ids]

        async def retired() -> bool:
            found = [await records.store_of(i).latest(i) for i in (*step_ids, *(j.id for j in jobs))]
            return all(data is None for data, _ in found)

        await eventually(retired, timeout=30, what="every finished job retired to history")
    starts = Counter(r.job_id for r in fleet.runs() if r.event == "start")
    assert set(starts.values()) == {1}


async def test_a_workflow_whose_steps_are_anywhere_is_seen_whole(fleet: Fleet) -> None:
    """A running workflow written before steps were placed (or by a version that did not place them) has
    its steps in any partition: while it runs, every reaper follows every partition, so its owner sees
    them all and finishes it; once it is over, each goes back to its own partitions."""
    async with two_reapers(fleet) as (client, nc):
        js = nc.jetstream()

        async def following(count: int) -> bool:
            return [await consumers(js, p) for p in range(4)] == [count] * 4

        await eventually(lambda: following(3), timeout=30, what="each partition followed by one reaper")
        records = Records.open(nc, partitions=4)
        now = round(time.time() * 1000)
        chained = [
            {"name": f"s{n}", "capability": "probe.sleep", "payload": 0.01, "depends_on": [f"s{n - 1}"]}
            for n in range(1, 8)
        ]
        request = wf.WorkflowRequest.model_validate(
            {"steps": [{"name": "s0", "capability": "probe.sleep", "payload": 0.01}, *chained]}
        )
        created, ordered = wf.new_record(request, new_ulid(now), now, None)  # as before partitions
        assert {shard_of(s.job_id, 4) for s in created.steps} - {shard_of(created.id, 4)}
        jobs = [steps.waiting_job(s, created, n, now, None) for n, s in enumerate(ordered)]
        started = await Workflows(nc, records).begin(
            created, wf.start(created, now), jobs, now, (lambda: None, lambda: None)
        )
        assert started
        await eventually(lambda: following(4), timeout=30, what="every reaper following every partition")
        fleet.worker("--concurrency", "2")

        async def finished() -> bool:
            return (await client.workflow(created.id)).state == "succeeded"

        await eventually(finished, timeout=60, what="the unplaced workflow to finish")
        await eventually(lambda: following(3), timeout=30, what="each reaper back to its own partitions")

        async def retired() -> bool:
            found = [await records.store_of(s.job_id).latest(s.job_id) for s in created.steps]
            return all(data is None for data, _ in found)

        await eventually(retired, timeout=30, what="every step retired to history")


async def test_reapers_stand_by_while_reapers_of_an_earlier_version_run(fleet: Fleet) -> None:
    """A reaper of an earlier version (job id shards, unplaced map instances) renews `reaper.member.*`:
    while one does, the partition-owning reapers leave the work to it — here, retiring a finished job."""
    spread = {"JETSCHED_RECORD_PARTITIONS": "2"}
    for name in ("intake", "timer", "dispatcher", "reaper"):
        fleet.service(name, env=spread)
    nc = await connect(fleet.url, "test")
    leases = Store(nc, subjects.LEASES_BUCKET)
    elder = f"reaper.member.{new_ulid(round(time.time() * 1000)).lower()}"
    renewing = True

    async def renew() -> None:
        while renewing:
            await leases.put(elder, b"{}")
            await asyncio.sleep(0.3)

    try:
        async with Client(fleet.url, timeout=20) as client:
            await client.stats()
            renewer = asyncio.create_task(renew())
            await asyncio.sleep(1)  # the reaper has seen the elder
            fleet.worker()
            job = await client.submit("probe.sleep", 0)
            assert (await client.wait(job.id, timeout=30)).state == "succeeded"  # outcomes still applied
            records = Records.open(nc, partitions=2)
            await asyncio.sleep(2)
            assert (await records.store_of(job.id).latest(job.id))[0] is not None  # not retired: standing by
            renewing = False
            await renewer

            async def retired() -> bool:
                return (await records.store_of(job.id).latest(job.id))[0] is None

            await eventually(retired, timeout=30, what="the job retired once the elder is gone")
    finally:
        await nc.close()
