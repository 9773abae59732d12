"""`make bench-scale` (hot queue part): one hot capability dispatched by 1, 2 and 3 dispatcher replicas at
once on the deployed 3-node cluster (every stream replicated 3 times), records and dispatch split in as
many partitions (`JETSCHED_RECORD_PARTITIONS`, `JETSCHED_DISPATCH_PARTITIONS`; docs/scaling.md).

For each D: a fresh cluster; intake, timer, R reapers (`--reapers`, 1 by default; with D > 1 record
partitions each follows only the partitions it owns) and D dispatchers (D dispatch shards, so each replica
holds one partition); then
- throughput: JOBS no-op jobs of one capability, end to end, through one worker of concurrency 200, and
  the CPU every process spent per job;
- order: 1,000 jobs of random priorities submitted to a paused queue, which is then resumed for a 6-slot
  worker: every job is ready, and known to its dispatcher, before the first starts, so a start is an
  order error when a higher-priority job started more than 5 ms later — counted over all starts, and
  among the starts of one partition (the guarantee: none there).
Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nats
import nats.js.errors
import orjson
import uvloop
from bench_dispatch import Started, inversions
from bench_throughput import HERE, WINDOW, cpu_seconds, succeeded, wait_succeeded
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from jetsched.bus.connect import connect
from jetsched.bus.records import Store
from jetsched.core import subjects
from jetsched.core.errors import NotFound
from jetsched.devkit import procs
from jetsched.devkit.cluster import NatsCluster
from jetsched.dispatcher import partitions
from jetsched.sdk import Client

DEPLOY = HERE.parents[1] / "deploy" / "nats"


async def paused_backlog(client: Client, count: int) -> list[tuple[str, Started]]:
    """`count` `bench.order` jobs of random priorities queued while their queue is paused, then resumed:
    each one's id and (priority, resumed at, started)."""
    rng = random.Random(5)
    await client.pause("bench.order")
    before = await succeeded(client)
    replies = []
    for base in range(0, count, WINDOW):
        replies += await asyncio.gather(
            *(
                client.submit("bench.order", priority=rng.randrange(10))
                for _ in range(base, min(count, base + WINDOW))
            )
        )
    await asyncio.sleep(3)  # every dispatcher's board has them all
    resumed = time.time()
    await client.pause("bench.order", paused=False)
    await wait_succeeded(client, before + count, timeout=300)
    views = await asyncio.gather(*(client.get(r.id) for r in replies))
    return [(v.id, (v.priority, resumed, v.result)) for v in views]


async def split(urls: str, dispatchers: int) -> None:
    """Until each dispatch shard (one per partition) is held by a replica of its own."""
    nc = await connect(urls, "bench-leases")
    store = Store(nc, subjects.LEASES_BUCKET)
    try:
        for _ in range(600):
            owners = set()
            for shard in range(dispatchers):
                with contextlib.suppress(NotFound):
                    data, _ = await store.get(f"dispatcher.shard.{shard}")
                    owners.add(orjson.loads(data)["owner"])
            if len(owners) == dispatchers:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the {dispatchers} dispatch shards never split over {dispatchers} replicas")
    finally:
        await nc.close()


async def measure(dispatchers: int, jobs: int, reapers: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="jetsched-hot-"))
    cluster = NatsCluster(sorted(DEPLOY.glob("cluster-*.conf")), work).start()
    env = {
        "PYTHONPATH": str(HERE),
        "JETSCHED_LOG_LEVEL": "WARNING",
        "JETSCHED_REPLICAS": "3",
        "JETSCHED_RECORD_PARTITIONS": str(dispatchers),
        "JETSCHED_DISPATCH_PARTITIONS": f"bench.noop={dispatchers},bench.order={dispatchers}",
        "JETSCHED_DISPATCHER_SHARDS": str(dispatchers),
    }
    names = ["intake", "timer"] + ["reaper"] * reapers + ["dispatcher"] * dispatchers
    children = [procs.service(name, cluster.urls, work, env=env).start() for name in names]
    try:
        async with Client(cluster.urls, timeout=60) as client:
            await client.list(limit=1)
            worker = procs.worker("bench_tasks", cluster.urls, work, "--concurrency", "200", env=env).start()
            await split(cluster.urls, dispatchers)
            await asyncio.sleep(1.5)  # the worker announces itself
            pids = {f"{c.name}{n}": c.pid for n, c in enumerate([*children, worker]) if c.pid}
            pids |= {f"nats{n}": node.proc.pid for n, node in enumerate(cluster.nodes) if node.proc}
            cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            before = await succeeded(client)
            started = time.perf_counter()
            for base in range(0, jobs, WINDOW):
                await asyncio.gather(
                    *(client.submit("bench.noop") for _ in range(base, min(jobs, base + WINDOW)))
                )
            await wait_succeeded(client, before + jobs, timeout=600)
            rate = jobs / (time.perf_counter() - started)
            cpu = {name: (cpu_seconds(pid) - cpu0[name]) * 1e6 / jobs for name, pid in pids.items()}
            worker.terminate()

            worker = procs.worker("bench_tasks", cluster.urls, work, "--concurrency", "6", env=env).start()
            backlog = await paused_backlog(client, 1000)
            worker.terminate()
        starts = [started for _, started in backlog]
        per_partition: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
        for job_id, started_at in backlog:
            per_partition[partitions.number(job_id, dispatchers)].append(started_at)  # plain jobs
        within = sum(inversions(part) for part in per_partition.values())
        print(f"\n{dispatchers} dispatcher(s), {dispatchers} partition(s), 3-node cluster (R3):")
        print(f"  one hot capability, end to end   {rate:,.0f} jobs/s ({jobs:,} no-op jobs)")
        print(
            f"  CPU µs per job   {sum(cpu.values()):,.0f} in all: "
            + "  ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        )
        print(
            f"  order errors     {inversions(starts)} of {len(starts)} starts overall, {within} within a partition"
            " (a higher priority ready > 5 ms started later; 6-slot worker, backlog)"
        )
    finally:
        for child in reversed(children):
            child.terminate()
        cluster.stop()


async def bucket(js: JetStreamContext, name: str) -> KeyValue:
    """An R3 bucket, once the cluster has elected its leaders."""
    for _ in range(60):
        with contextlib.suppress(nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
            return await js.create_key_value(bucket=name, history=1, replicas=3)
        await asyncio.sleep(0.5)
    raise TimeoutError(f"bucket {name} could not be created")


async def stream_writes(partitions: list[int], writes: int) -> None:
    """Replicated (R3) KV creates per second from one client, spread over 1, 2, … streams: what one stream
    leader takes, against several (on this machine, with every node on the same two cores)."""
    work = Path(tempfile.mkdtemp(prefix="jetsched-writes-"))
    cluster = NatsCluster(sorted(DEPLOY.glob("cluster-*.conf")), work).start()
    try:
        nc = await nats.connect(cluster.urls.split(","))
        js = nc.jetstream()
        body = b'{"payload": null, "state": "ready", "attempt": 0}' + b" " * 150
        for run, count in enumerate(partitions):
            buckets = [await bucket(js, f"w{run}x{p}") for p in range(count)]
            started = time.perf_counter()
            for base in range(0, writes, WINDOW):
                await asyncio.gather(
                    *(
                        buckets[n % count].create(f"k{n}", body)
                        for n in range(base, min(writes, base + WINDOW))
                    )
                )
            rate = writes / (time.perf_counter() - started)
            print(f"  R3 KV creates, one client, {count} stream(s): {rate:,.0f}/s")
        await nc.close()
    finally:
        cluster.stop()


async def main(counts: list[int], jobs: int, reapers: int, writes: bool) -> None:
    print(f"hot queue: {os.cpu_count()} cores; every process of the cluster and the stack on this machine")
    if writes:
        await stream_writes([1, 3], 30_000)
    for dispatchers in counts:
        await measure(dispatchers, jobs, reapers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dispatchers", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--reapers", type=int, default=1, help="reaper replicas (default 1)")
    parser.add_argument("--no-writes", action="store_true", help="skip the stream leaders' write rate")
    args = parser.parse_args()
    uvloop.run(main(args.dispatchers, args.jobs, args.reapers, not args.no_writes))
