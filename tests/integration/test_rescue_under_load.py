"""A worker killed while the fleet runs near capacity with a backlog: its jobs run again at once.

Rescued jobs keep their place in the queue (ordered by when they first became ready), so a job whose
worker died does not wait again behind the backlog that built up since (issue #9: it waited 23–25 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import datetime

import orjson
import pytest

from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

pytestmark = [pytest.mark.slow, pytest.mark.serial, pytest.mark.timeout(120)]

WORKERS = 3
SLOTS = 4
JOB_S = 0.4
#: Jobs per second the fleet can run; the load is 90% of it on top of a standing backlog.
CAPACITY = WORKERS * SLOTS / JOB_S
#: How soon after the reaper detects the loss a rescued job must be running again.
RERUN_S = 3.0


def rescues(fleet: Fleet) -> dict[str, float]:
    """Job → when the reaper rescued it (its log's timestamp)."""
    found = {}
    for proc in fleet.services:
        if proc.name != "reaper":
            continue
        for line in proc.log_path.read_text(errors="replace").splitlines():
            if '"rescued job"' in line:
                entry = orjson.loads(line)
                found[entry["job"]] = datetime.fromisoformat(entry["ts"]).timestamp()
    return found


async def test_killed_worker_jobs_rerun_within_3s_of_detection_under_a_backlog(fleet: Fleet) -> None:
    fleet.start_services()
    workers = [fleet.worker("--concurrency", str(SLOTS)) for _ in range(WORKERS)]
    async with Client(fleet.url, timeout=20) as client:
        await client.list(limit=1)
        # One job end to end first: a reaper is up to store the workers' reports (until one is, they hold
        # finished jobs, and past a bound are sent no more work — the backlog below would stall).
        await client.wait((await client.submit("probe.sleep", 0)).id, timeout=30)
        await client.submit_many("probe.sleep", [JOB_S] * int(CAPACITY * 3))  # a 3 s backlog to begin
        stop = asyncio.Event()

        async def load() -> None:
            rng = random.Random(9)
            while not stop.is_set():
                await client.submit("probe.sleep", JOB_S)
                await asyncio.sleep(rng.expovariate(0.9 * CAPACITY))

        feeding = asyncio.create_task(load())
        try:
            await asyncio.sleep(3.0)
            victim = workers[0]
            held = {r.job_id for r in fleet.runs() if r.pid == victim.pid and r.event == "start"} - {
                r.job_id for r in fleet.runs() if r.pid == victim.pid and r.event == "end"
            }
            backlog = (await client.stats()).queues["probe.sleep"].ready
            victim.kill()
            killed_at = time.time()
            await eventually(
                lambda: held <= set(rescues(fleet)), timeout=20, what="the victim's jobs rescued"
            )
            await eventually(
                lambda: all(len(fleet.started(j)) > 1 for j in held), timeout=20, what="rescued jobs rerun"
            )
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await feeding
    detected = rescues(fleet)
    waits = {j: min(r.at for r in fleet.started(j) if r.pid != victim.pid) - detected[j] for j in held}
    print(
        f"backlog at the kill: {backlog}; held {len(held)}; detected after",
        f"{min(detected[j] for j in held) - killed_at:.2f}s; rerun after detection {waits}",
    )
    assert held, "the victim held no job when it was killed"
    assert backlog > CAPACITY, f"only {backlog} jobs waited when the worker was killed"
    assert max(waits.values()) < RERUN_S, waits
