"""Hosts whose clocks disagree: one replica of every service (and a worker) runs ahead, one behind.

Each process is told its host's clock is off (`JETSCHED_CLOCK_SKEW_MS`, read by `SystemClock`); the
NATS server and this test keep the machine's true time, and the workers log starts in true time. Due
times are judged by the servers' clock (`ServerClock`), so no skew makes a job start early (or late),
a cron schedule fire early or twice, or a replica steal a live shard lease.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from jetsched.core.clock import SKEW_ENV
from jetsched.devkit import procs
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

from .conftest import ms

pytestmark = [pytest.mark.slow, pytest.mark.serial]

#: How early a start may be against the true due time: the server-time probe's reply flight and the
#: rounding to milliseconds (docs/architecture.md, "Time"). Submit times here are taken *before* the
#: request is sent, which only loosens the check.
EARLY_S = 0.005
#: And how late (the timer's read-ahead, dispatch, a loaded 2-core machine).
LATE_S = 1.5


def took_shards(fleet: Fleet) -> Counter[str]:
    """`took shard` log lines per service process."""
    return Counter(
        {
            p.log_path.name: p.log_path.read_text(errors="replace").count('"took shard"')
            for p in fleet.services
        }
    )


@pytest.mark.parametrize("skew_ms", [2_000, 30_000])
async def test_skewed_hosts_start_nothing_early(fleet: Fleet, skew_ms: int) -> None:
    for skew in (skew_ms, -skew_ms):
        env = {SKEW_ENV: str(skew)}
        for name in procs.SERVICES:
            fleet.service(name, env=env)
        fleet.worker("--concurrency", "16", env=env)
    rng = random.Random(skew_ms)
    async with Client(fleet.url, timeout=20) as client:
        await client.list(limit=1)
        # Shards settle between the replicas (each joined at its own moment); then ownership must hold.
        settled = await _settled(fleet)
        await client.create_schedule("skewed-cron", "probe.sleep", 0, cron="* * * * * *")
        due: dict[str, float] = {}
        for n in range(60):
            wait = rng.uniform(0.3, 3.0)
            if n % 2:
                sent = time.time()
                reply = await client.submit("probe.sleep", 0, delay=wait)
                due[reply.id] = sent + wait
            else:
                at = time.time() + wait + rng.random() / 1000  # sub-millisecond digits: rounded up
                reply = await client.submit("probe.sleep", 0, run_at=datetime.fromtimestamp(at, UTC))
                due[reply.id] = at
        records = [await client.wait(job_id, timeout=30) for job_id in due]
        await client.schedule("skewed-cron", "pause")
        fires = [j for j in (await client.list(limit=1000)).jobs if j.schedule_id == "skewed-cron"]
        await eventually(
            lambda: all(fleet.started(j.id) for j in fires if j.state == "succeeded"),
            timeout=10,
            what="cron fires logged",
        )
    assert {r.state for r in records} == {"succeeded"}
    starts = {job_id: min(r.at for r in fleet.started(job_id)) for job_id in due}
    early = {j: round(due[j] - at, 4) for j, at in starts.items() if at < due[j] - EARLY_S}
    late = {j: round(at - due[j], 3) for j, at in starts.items() if at > due[j] + LATE_S}
    assert not early, f"started before their due time (s): {early}"
    assert not late, f"started late (s): {late}"

    nominal = sorted(ms(j.fire_at) for j in fires)
    assert len(nominal) >= 3
    assert [b - a for a, b in itertools.pairwise(nominal)] == [1000] * (len(nominal) - 1), nominal
    for job in fires:
        runs = fleet.started(job.id)
        assert len(runs) <= 1, f"cron fire {job.fire_at} ran {len(runs)} times"
        if runs:
            assert runs[0].at >= ms(job.fire_at) / 1000 - EARLY_S, f"fired early: {job}"
    assert took_shards(fleet) == settled, "a shard lease changed hands while every replica was alive"


async def _settled(fleet: Fleet) -> Counter[str]:
    """Shard takes per process once they have stopped changing for 3 s (the replicas balanced)."""
    last, since = took_shards(fleet), time.monotonic()
    while time.monotonic() - since < 3.0:
        await asyncio.sleep(0.25)
        now = took_shards(fleet)
        if now != last:
            last, since = now, time.monotonic()
    return last
