"""The handler the zone workers run: each execution is logged to a file outside NATS.

`JETSCHED_ZONES_LOG` names the file; every line is `<unix time> <pid> <host> <job id> <attempt> <event>`
(`start`, `end`). The result names the attempt and the process that ran it, so the checker can tell
whether a final record's result came from the attempt that held the lease.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from jetsched.sdk import Job, task

HOST = os.environ.get("JETSCHED_ZONE_HOST", "?")


def log(job: Job, event: str) -> None:
    path = os.environ.get("JETSCHED_ZONES_LOG")
    if path:
        with open(path, "a") as out:
            out.write(f"{time.time():.6f} {os.getpid()} {HOST} {job.id} {job.attempt} {event}\n")


@task("zones.sleep")
async def sleep(job: Job) -> dict[str, Any]:
    """Sleeps `payload` seconds; returns who ran which attempt."""
    log(job, "start")
    await asyncio.sleep(float(job.payload or 0))
    log(job, "end")
    return {"pid": os.getpid(), "host": HOST, "attempt": job.attempt}
