"""Handlers the benchmark's worker process runs."""

from __future__ import annotations

import asyncio
import time

from jetsched.sdk import Job, task


@task("bench.noop")
async def noop(job: Job) -> None:
    """Nothing: measures the pipeline, not the handler."""


@task("bench.stamp")
async def stamp(job: Job) -> float:
    """Returns when it started, for submit→start latency."""
    return time.time()


for _n in range(4):
    task(f"bench.multi.{_n}")(noop)


@task("bench.order")
async def order(job: Job) -> float:
    """Takes a little while, so a backlog forms; returns when it started."""
    started = time.time()
    await asyncio.sleep(0.005)
    return started


@task("bench.list")
async def make_list(job: Job) -> list[int]:
    """Returns `[0, 1, …, payload - 1]`: the list a map step runs over."""
    return list(range(int(job.payload or 0)))
