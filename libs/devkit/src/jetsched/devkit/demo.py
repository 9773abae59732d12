"""Demo handlers run by `jetsched dev`: `jetsched worker jetsched.devkit.demo`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jetsched.sdk import Fatal, Job, task


@task("demo.add")
async def add(job: Job) -> int:
    """Adds the numbers in the payload."""
    return sum(job.payload["numbers"])


@task("demo.flaky")
async def flaky(job: Job) -> str:
    """Fails until attempt `succeed_on`, to show retries with backoff."""
    if job.attempt < job.payload.get("succeed_on", 3):
        raise RuntimeError(f"transient failure on attempt {job.attempt}")
    return f"succeeded on attempt {job.attempt}"


@task("demo.sleep")
def sleep(job: Job) -> dict[str, Any]:
    """A blocking handler (runs in a thread)."""
    started = time.time()
    time.sleep(job.payload.get("seconds", 0.1))
    return {"slept": round(time.time() - started, 3)}


@task("demo.fail")
async def fail(job: Job) -> None:
    """Always fails: ends in the dead letters."""
    await asyncio.sleep(0)
    if job.payload.get("fatal"):
        raise Fatal("this input can never succeed")
    raise ValueError("this job always fails")


@task("demo.noop")
async def noop(job: Job) -> None:
    """Does nothing: the benchmark's handler."""
