"""Replicas split shards by lease; when one is killed, its shards move and their work still happens, once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import timedelta

import pytest

from jetsched.bus.connect import connect
from jetsched.bus.records import Store
from jetsched.core import subjects
from jetsched.core.errors import NotFound
from jetsched.core.shards import shard_of
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.dispatcher.service import DEFAULT_SHARDS as DISPATCHER_SHARDS
from jetsched.reaper.service import DEFAULT_SHARDS as REAPER_SHARDS
from jetsched.sdk import Client, chain, step
from jetsched.timer.service import DEFAULT_SHARDS

pytestmark = pytest.mark.slow


@pytest.mark.serial  # delayed jobs start at most a lease TTL plus a tick late across the takeover
async def test_killed_timer_replica_shards_taken_over(fleet: Fleet) -> None:
    """kill -9 the timer that owns a schedule's shard: its timers fire on the other, none lost or doubled."""
    for name in ("intake", "dispatcher", "reaper", "timer", "timer"):
        fleet.service(name)
    fleet.worker("--concurrency", "20")
    async with Client(fleet.url, timeout=20) as client:
        await client.list(limit=1)
        await client.create_schedule("beat", "probe.sleep", None, every=1.0)
        delayed = [await client.submit("probe.sleep", None, delay=1.0 + n * 0.1) for n in range(30)]
        await eventually(lambda: _fired(client, 2), timeout=15, what="schedule fired twice")
        victim = await fleet.lease_owner("timer", shard_of("beat", DEFAULT_SHARDS))
        victim.kill()
        killed_at_fired = (await client.schedule("beat")).fired
        records = [await client.wait(r.id, timeout=30) for r in delayed]
        await eventually(lambda: _fired(client, killed_at_fired + 4), timeout=20, what="fires after the kill")
        record = await client.schedule("beat")
    assert {r.state for r in records} == {"succeeded"}
    lateness = [(r.started_at - r.run_at).total_seconds() for r in records if r.started_at]
    assert len(lateness) == len(records)
    assert min(lateness) >= 0
    assert max(lateness) < 2.0 + 1.5, lateness  # at most one lease TTL (2 s) plus the takeover's tick
    history = [e for e in record.history if e.job_id]
    nominal = [e.nominal for e in history]
    assert [b - a for a, b in itertools.pairwise(nominal)] == [timedelta(seconds=1)] * (len(nominal) - 1)
    assert not [e for e in record.history if e.missed]
    assert len({e.job_id for e in history}) == len(history)
    await asyncio.sleep(0)


async def _fired(client: Client, n: int) -> bool:
    return (await client.schedule("beat")).fired >= n


async def test_killed_dispatcher_replica_capability_moves(fleet: Fleet) -> None:
    """kill -9 the dispatcher that owns a capability's shard: the other takes it over within a lease TTL."""
    for name in ("intake", "timer", "reaper", "dispatcher", "dispatcher"):
        fleet.service(name)
    fleet.worker("--concurrency", "8")
    async with Client(fleet.url, timeout=20) as client:
        await client.wait((await client.submit("probe.sleep", None)).id, timeout=20)
        victim = await fleet.lease_owner("dispatcher", shard_of("probe.sleep", DISPATCHER_SHARDS))
        victim.kill()
        submitted = time.monotonic()
        replies = [await client.submit("probe.sleep", None) for _ in range(10)]
        records = [await client.wait(r.id, timeout=20) for r in replies]
        took = time.monotonic() - submitted
    assert {r.state for r in records} == {"succeeded"}
    assert took < 2.0 + 2.0  # one lease TTL, plus the takeover's tick and the runs


async def test_routing_and_queue_control_with_worker_processes(fleet: Fleet) -> None:
    """Real worker processes: labels route, a paused queue waits, a drained worker exits cleanly."""
    fleet.start_services()
    plain = fleet.worker("--concurrency", "2")
    gpu = fleet.worker("--concurrency", "2", "--label", "gpu=a100")
    async with Client(fleet.url, timeout=20) as client:
        await client.list(limit=1)
        needs_gpu = [await client.submit("probe.sleep", None, labels={"gpu": "a100"}) for _ in range(4)]
        results = {(await client.wait(r.id, timeout=20)).result for r in needs_gpu}
        assert results == {gpu.pid}
        await client.pause("probe.sleep")
        waiting = await client.submit("probe.sleep", None)
        await eventually(lambda: _says(client, waiting.id, "paused"), timeout=10, what="paused reason")
        await client.pause("probe.sleep", paused=False)
        assert (await client.wait(waiting.id, timeout=20)).state == "succeeded"
        session = await eventually(lambda: _plain_session(client), timeout=10, what="plain worker listed")
        assert session is not None
        await client.drain(session)
        assert plain.popen is not None
        assert await asyncio.to_thread(plain.popen.wait, 20) == 0


async def _plain_session(client: Client) -> str | None:
    return next((w.session for w in await client.workers() if not w.labels), None)


async def _says(client: Client, job_id: str, word: str) -> bool:
    return word in ((await client.get(job_id)).waiting or "")


async def test_killed_reaper_replica_shards_taken_over(fleet: Fleet) -> None:
    """Reapers split job shards: kill -9 the one owning a running job's shard, and its worker too — the
    other reaper takes the shard within a lease TTL, rescues the lost job, and retires every finished
    record (its own shards' and the dead one's)."""
    for name in ("intake", "timer", "dispatcher", "reaper", "reaper"):
        fleet.service(name)
    worker = fleet.worker("--concurrency", "8")
    async with Client(fleet.url, timeout=20) as client:
        await client.wait((await client.submit("probe.sleep", None)).id, timeout=20)

        async def split() -> bool:
            owners = {(await fleet.lease_owner("reaper", shard)).pid for shard in range(REAPER_SHARDS)}
            return len(owners) == 2

        await eventually(split, timeout=20, what="the reapers' shards split")
        quick = [await client.submit("probe.sleep", None) for _ in range(20)]
        slow = await client.submit("probe.sleep", 30, max_attempts=3)

        async def running() -> bool:
            return (await client.get(slow.id)).state == "running"

        await eventually(running, timeout=20, what="the slow job running")
        victim = await fleet.lease_owner("reaper", shard_of(slow.id, REAPER_SHARDS))
        victim.kill()
        worker.kill()
        # A short drain: at the end it still holds the rescued 30 s job, which teardown need not wait for.
        fleet.worker(
            "--concurrency", "8", "--drain-timeout", "1", env={"JETSCHED_PROBE_LOG": str(fleet.exec_log)}
        )
        for reply in quick:
            assert (await client.wait(reply.id, timeout=20)).state == "succeeded"

        async def rescued() -> bool:
            return (await client.get(slow.id)).attempt >= 2

        await eventually(rescued, timeout=20, what="the lost job rescued by the other reaper")

        nc = await connect(fleet.url, "test")
        try:
            jobs = Store(nc, subjects.JOBS_BUCKET)

            async def retired() -> bool:
                for reply in quick:
                    with contextlib.suppress(NotFound):
                        await jobs.get(reply.id)
                        return False
                return True

            await eventually(retired, timeout=20, what="every finished record retired to history")
        finally:
            await nc.close()


async def test_killed_reaper_replica_workflow_moves(fleet: Fleet) -> None:
    """kill -9 the reaper advancing a chain (the holder of its id's shard) between two steps: the other
    reaper takes the shard and advances it; each step runs once."""
    for name in ("intake", "timer", "dispatcher", "reaper", "reaper"):
        fleet.service(name)
    fleet.worker("--concurrency", "4")
    async with Client(fleet.url, timeout=20) as client:
        await client.wait((await client.submit("probe.sleep", None)).id, timeout=20)
        flow = await client.submit_workflow(chain(*(step(f"s{n}", "probe.sleep", 0.4) for n in range(5))))

        async def second_running() -> bool:
            return (await client.get(flow.steps["s1"])).state == "running"

        await eventually(second_running, timeout=20, what="the second step running")
        (await fleet.lease_owner("reaper", shard_of(flow.id, REAPER_SHARDS))).kill()

        async def finished() -> bool:
            return (await client.workflow(flow.id)).state == "succeeded"

        await eventually(finished, timeout=30, what="the workflow finished by the other reaper")
    for job_id in flow.steps.values():
        assert len(fleet.started(job_id)) == 1
