"""Timer replicas split the shards by lease; when one is killed its timers still fire, once."""

from __future__ import annotations

import asyncio
import itertools

import nats
import orjson
import pytest

from jetsched.core import subjects
from jetsched.core.shards import shard_of
from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client
from jetsched.timer.service import DEFAULT_SHARDS

pytestmark = pytest.mark.slow


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
        victim = await owner_of_shard(fleet, shard_of("beat", DEFAULT_SHARDS))
        victim.kill()
        killed_at_fired = (await client.schedule("beat"))["schedule"]["fired"]
        records = [await client.wait(r.id, timeout=30) for r in delayed]
        await eventually(lambda: _fired(client, killed_at_fired + 4), timeout=20, what="fires after the kill")
        record = (await client.schedule("beat"))["schedule"]
    assert {r["state"] for r in records} == {"succeeded"}
    lateness = [r["started_at_ms"] - r["run_at_ms"] for r in records]
    assert min(lateness) >= 0
    assert max(lateness) < 2000 + 1500, lateness  # at most one lease TTL (2 s) plus the takeover's tick
    history = [e for e in record["history"] if e["job_id"]]
    nominal = [e["nominal_ms"] for e in history]
    assert [b - a for a, b in itertools.pairwise(nominal)] == [1000] * (len(nominal) - 1)
    assert not [e for e in record["history"] if e["missed"]]
    assert len({e["job_id"] for e in history}) == len(history)
    await asyncio.sleep(0)


async def owner_of_shard(fleet: Fleet, shard: int) -> procs.Proc:
    """The timer process holding a shard's lease (its instance id is in its start-up log line)."""
    nc = await nats.connect(fleet.url)
    kv = await nc.jetstream().key_value(subjects.LEASES_BUCKET)
    owner = orjson.loads((await kv.get(f"timer.shard.{shard}")).value or b"{}")["owner"]
    await nc.close()
    timers = [p for p in fleet.services if p.name == "timer"]
    return next(p for p in timers if owner in p.log_path.read_text())


async def _fired(client: Client, n: int) -> bool:
    return bool((await client.schedule("beat"))["schedule"]["fired"] >= n)
