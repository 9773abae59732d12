"""Handlers the benchmark's worker process runs."""

from __future__ import annotations

import time

from jetsched.sdk import Job, task


@task("bench.noop")
async def noop(job: Job) -> None:
    """Nothing: measures the pipeline, not the handler."""


@task("bench.stamp")
async def stamp(job: Job) -> float:
    """Returns when it started, for submit→start latency."""
    return time.time()
