"""`make bench-scale`, pending jobs: what each process holds per delayed job that has not come due yet.

A fresh nats-server, the four services and one no-op worker as processes; one job through the pipeline
(so every process has warmed up); RSS of each. Then N delayed jobs submitted through intake as real
submits — `Client.submit_many`, 1,000 per request, several requests in flight — due between one and two
hours later, so they all stay pending; once every feed has been sent the last entry and RSS has stopped
moving, RSS again. Then the services and the worker are restarted (nats-server stays: a failover of the
services) and the bench reports restart → first new job done, how long the feeds took to replay, and
RSS once more. Bytes per pending job = (RSS after − RSS before) / N, for each process.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from scale_stack import CAPABILITY, feeds_caught_up, first_job_done, settled, start_stack

from jetsched.devkit.nats_server import NatsServer
from jetsched.sdk import Client

#: Jobs per `submit_many` request (the protocol's maximum) and requests in flight at once.
BATCH = 1000
IN_FLIGHT = 4
#: Due times spread over [DELAY_S, 2 × DELAY_S): all stay pending for the whole run.
DELAY_S = 3600


async def submit_delayed(url: str, n: int) -> float:
    """Submit `n` delayed jobs; returns jobs/s."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def batch(client: Client, start: int) -> None:
        size = min(BATCH, n - start)
        delay = DELAY_S + (start // BATCH) % DELAY_S  # one due second per batch, spread over an hour
        async with slots:
            handles = await client.submit_many(CAPABILITY, [None] * size, delay=delay)
        failed = [h for h in handles if isinstance(h, Exception)]
        if failed:
            raise RuntimeError(f"{len(failed)} submits refused, e.g. {failed[0]!r}")

    started = time.perf_counter()
    async with Client(url, timeout=60) as client:
        await asyncio.gather(*(batch(client, start) for start in range(0, n, BATCH)))
    elapsed = time.perf_counter() - started
    return n / elapsed if elapsed else 0.0


async def measure_pending(n: int) -> dict[str, dict[str, float]]:
    """RSS (MiB) of every process before, after N pending jobs, and after a restart of the services;
    the per-job cost (B); and the timings (s)."""
    work = Path(tempfile.mkdtemp(prefix="jetsched-pending-"))
    server = NatsServer(work / "js").start()
    children = start_stack(server, work)
    try:
        await first_job_done(server.url)
        await feeds_caught_up(server.url)
        before = await settled(children, server)
        timings = {"submit_per_s": await submit_delayed(server.url, n)}
        timings["catch_up_s"] = await feeds_caught_up(server.url)
        after = await settled(children, server)
        print(f"  before {before}\n  after {after}\n  {timings}", flush=True)
        for child in children:
            child.terminate()
        started = time.perf_counter()
        children = start_stack(server, work)
        await first_job_done(server.url)
        timings["restart_to_first_job_s"] = time.perf_counter() - started
        await feeds_caught_up(server.url)
        timings["restart_to_replayed_s"] = time.perf_counter() - started
        restarted = await settled(children, server)
        per_job = {k: (after[k] - before[k]) * 2**20 / n for k in before}
        per_job_restarted = {k: (restarted[k] - before[k]) * 2**20 / n for k in before}
        return {
            "before_mib": before,
            "after_mib": after,
            "restarted_mib": restarted,
            "bytes_per_job": per_job,
            "bytes_per_job_restarted": per_job_restarted,
            "timings": timings,
        }
    finally:
        for child in children:
            child.terminate()
        server.stop()
