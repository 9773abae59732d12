"""Handlers for worker processes started by the process tests; each run is logged outside NATS."""

from __future__ import annotations

import asyncio
import os
import time

from jetsched.sdk import Job, task


def log(job: Job, event: str) -> None:
    with open(os.environ["JETSCHED_TEST_EXEC_LOG"], "a") as out:
        out.write(f"{time.time():.3f} {os.getpid()} {job.id} {job.attempt} {event}\n")


@task("sleepy")
async def sleepy(job: Job) -> int:
    log(job, "start")
    await asyncio.sleep(job.payload)
    log(job, "end")
    return os.getpid()
