"""What `bench_scale.py`'s measurements share: the stack as processes, their RSS, a first job, caught-up feeds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import nats
from nats.errors import NoRespondersError

from jetsched.core import subjects
from jetsched.devkit import procs
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

if TYPE_CHECKING:
    from jetsched.devkit.nats_server import NatsServer

HERE = Path(__file__).parent
CAPABILITY = "bench.noop"
#: The buckets whose feeds the services' views follow.
FEED_BUCKETS = (subjects.JOBS_BUCKET, subjects.TIMERS_BUCKET)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_stack(server: NatsServer, work: Path) -> list[procs.Proc]:
    env = {"PYTHONPATH": str(HERE), "JETSCHED_LOG_LEVEL": "WARNING"}
    children = [procs.service(name, server.url, work, env=env).start() for name in procs.SERVICES]
    children.append(procs.worker("bench_tasks", server.url, work, env=env).start())
    return children


def rss_all(children: list[procs.Proc], server: NatsServer) -> dict[str, float]:
    """Each process's RSS (MiB), by name (`worker:bench_tasks` as `worker`)."""
    assert server.proc is not None
    figures = {c.name.split(":")[0]: rss_mib(c.pid) for c in children if c.pid}
    figures["nats-server"] = rss_mib(server.proc.pid)
    return figures


async def first_job_done(url: str, timeout: float = 900) -> None:
    """Submit (once intake answers) and wait for one no-op job to succeed."""
    async with Client(url, timeout=30) as client:

        async def answers() -> bool:
            try:
                await client.stats()
            except (NoRespondersError, TimeoutError):  # still replaying its feeds: not in the API group yet
                return False
            return True

        await eventually(answers, timeout=timeout, interval=0.1, what="intake answers")
        reply = await client.submit(CAPABILITY)
        await client.wait(reply.id, timeout=timeout)


async def feeds_caught_up(url: str, timeout: float = 1800) -> float:
    """Wait until every consumer of the record and timer buckets has been sent the last entry; returns
    how long that took (s). A feed's consumer uses flow control, so sent is close to handled."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    started = time.perf_counter()
    try:
        while True:
            behind = 0
            for bucket in FEED_BUCKETS:
                stream = subjects.kv_stream(bucket)
                last = (await js.stream_info(stream)).state.last_seq
                for consumer in await js.consumers_info(stream):
                    if not consumer.push_bound:
                        continue  # a stopped process's consumer, waiting for its inactivity threshold
                    sent = consumer.delivered.stream_seq if consumer.delivered else 0
                    behind += max(0, (last or 0) - (sent or 0))
            if not behind:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"feeds still {behind} entries behind")
            await asyncio.sleep(0.5)
    finally:
        await nc.close()


async def settled(children: list[procs.Proc], server: NatsServer, quiet_s: float = 3.0) -> dict[str, float]:
    """RSS once no process's has moved by more than 1 % (and 0.5 MiB) for `quiet_s` (at most a minute)."""
    last = rss_all(children, server)
    deadline = time.perf_counter() + 60
    while True:
        await asyncio.sleep(quiet_s)
        now = rss_all(children, server)
        if time.perf_counter() > deadline or all(
            abs(now[k] - last[k]) <= max(0.5, 0.01 * last[k]) for k in now
        ):
            return now
        last = now
