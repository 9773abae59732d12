"""Handlers for crash and chaos tests: each run is logged to a file outside NATS (the execution log).

`JETSCHED_PROBE_LOG` names the file; every line is `<unix time> <pid> <job id> <attempt> <event>`.
"""

from __future__ import annotations

import asyncio
import os
import time

from jetsched.sdk import Job, task


def log(job: Job, event: str) -> None:
    path = os.environ.get("JETSCHED_PROBE_LOG")
    if path:
        with open(path, "a") as out:
            out.write(f"{time.time():.6f} {os.getpid()} {job.id} {job.attempt} {event}\n")


@task("probe.sleep")
async def sleep(job: Job) -> int:
    """Sleeps `payload` seconds (a number, or null for none); returns the worker's pid."""
    log(job, "start")
    await asyncio.sleep(float(job.payload or 0))
    log(job, "end")
    return os.getpid()


@task("probe.sleep_sync")
def sleep_in_thread(job: Job) -> int:
    """`probe.sleep` as a plain `def`: run in a worker thread, which no cancellation stops."""
    log(job, "start")
    time.sleep(float(job.payload or 0))
    log(job, "end")
    return os.getpid()


@task("probe.poison")
async def poison(job: Job) -> None:
    """Kills the worker process running it, every time: a poison pill."""
    log(job, "start")
    os._exit(1)


@task("probe.list")
async def make_list(job: Job) -> list[int]:
    """Returns `[0, 1, …, payload - 1]`: the list a map step runs over."""
    log(job, "start")
    log(job, "end")
    return list(range(int(job.payload or 0)))


@task("probe.item")
async def item(job: Job) -> object:
    """Returns its map element (`job.item`) and sleeps `payload` seconds first."""
    log(job, "start")
    await asyncio.sleep(float(job.payload or 0))
    log(job, "end")
    return job.item


@task("probe.flaky")
async def flaky(job: Job) -> int:
    """Fails its first attempt (an error the worker reports), succeeds on the next."""
    log(job, "start")
    if job.attempt == 1:
        raise RuntimeError("first attempts fail")
    log(job, "end")
    return job.attempt


@task("probe.pass")
async def pass_along(job: Job) -> dict[str, object]:
    """Sleeps `payload` seconds; returns it with its parents' results (a workflow step's `parents`)."""
    log(job, "start")
    await asyncio.sleep(float(job.payload or 0))
    log(job, "end")
    return {"slept": job.payload, "parents": job.parents or {}}
