"""`make bench` (dispatch part): throughput with one and two dispatcher replicas, and priority order errors.

- Throughput: 10,000 no-op jobs over four capabilities (so their shards can split across replicas), end to
  end, with 1 and then 2 dispatcher processes.
- Order error: 2,000 jobs of random priorities submitted faster than a 4-slot worker drains them; a start
  is an inversion when some higher-priority job had been ready (submitted) for over 5 ms and started later.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import uvloop
from bench_throughput import HERE, WINDOW, succeeded, wait_succeeded

from jetsched.devkit import procs
from jetsched.devkit.nats_server import NatsServer
from jetsched.sdk import Client

T = TypeVar("T")


Body = Callable[[Client, NatsServer, Path, dict[str, str]], Awaitable[T]]


async def run_fleet(dispatchers: int, body: Body[T]) -> T:
    work = Path(tempfile.mkdtemp(prefix="jetsched-dispatch-"))
    server = NatsServer(work / "js").start()
    env = {"PYTHONPATH": str(HERE), "JETSCHED_LOG_LEVEL": "WARNING"}
    names = ["intake", "timer", "reaper"] + ["dispatcher"] * dispatchers
    children = [procs.service(name, server.url, work, env=env).start() for name in names]
    try:
        async with Client(server.url, timeout=30) as client:
            await client.list(limit=1)
            return await body(client, server, work, env)
    finally:
        for child in reversed(children):
            child.terminate()
        server.stop()


async def throughput(client: Client, server: NatsServer, work: Path, env: dict[str, str]) -> float:
    worker = procs.worker("bench_tasks", server.url, work, "--concurrency", "200", env=env).start()
    try:
        await asyncio.sleep(1.5)  # leases settle, the worker announces itself
        before = await succeeded(client)
        jobs = 10_000
        started = time.perf_counter()
        for base in range(0, jobs, WINDOW):
            await asyncio.gather(*(client.submit(f"bench.multi.{n % 4}") for n in range(base, base + WINDOW)))
        await wait_succeeded(client, before + jobs, timeout=300)
        return jobs / (time.perf_counter() - started)
    finally:
        worker.terminate()


#: (priority, when it was submitted, when it started), seconds.
Started = tuple[int, float, float]


def inversions(jobs: list[Started], slack_s: float = 0.005) -> int:
    """Starts that began while some higher-priority job had been ready (submitted) for over `slack_s` and
    started later."""
    return sum(
        1
        for priority, _, start in jobs
        if any(p > priority and ready + slack_s < start < other for p, ready, other in jobs)
    )


async def prioritized_backlog(
    client: Client, count: int, pace_s: float = 0.0015
) -> list[tuple[str, Started]]:
    """Submit `count` `bench.order` jobs of random priorities, faster than they drain; once all ran,
    each one's id and (priority, submitted, started)."""
    rng = random.Random(5)
    ready_at: dict[str, tuple[int, float]] = {}
    before = await succeeded(client)
    for _ in range(count):
        priority = rng.randrange(10)
        reply = await client.submit("bench.order", priority=priority)
        ready_at[reply.id] = (priority, time.time())
        await asyncio.sleep(pace_s)
    await wait_succeeded(client, before + len(ready_at), timeout=300)
    views = await asyncio.gather(*(client.get(i) for i in ready_at))
    return [(v.id, (ready_at[v.id][0], ready_at[v.id][1], v.result)) for v in views]


async def order_errors(
    client: Client, server: NatsServer, work: Path, env: dict[str, str]
) -> tuple[int, int]:
    worker = procs.worker("bench_tasks", server.url, work, "--concurrency", "4", env=env).start()
    try:
        await asyncio.sleep(1.5)
        jobs = [started for _, started in await prioritized_backlog(client, 2000)]
        return inversions(jobs), len(jobs)
    finally:
        worker.terminate()


async def main() -> None:
    print("\ndispatch:")
    one = await run_fleet(1, throughput)
    two = await run_fleet(2, throughput)
    print(f"  end to end, 4 capabilities   1 dispatcher {one:,.0f} jobs/s   2 dispatchers {two:,.0f} jobs/s")
    inversions, total = await run_fleet(2, order_errors)
    print(
        f"  priority order errors        {inversions} of {total} starts ({inversions / total:.2%}) began while a "
        "higher priority had waited > 5 ms (2 dispatchers, 4-slot worker, backlog)"
    )


if __name__ == "__main__":
    uvloop.run(main())
