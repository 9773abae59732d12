"""`make bench-scale`: what retained history costs each process after a restart.

For each N (0 and 1,000,000 by default; `--quick`: 0 and 100,000): a fresh nats-server, the four services
and one no-op worker as processes; one job run through the real pipeline and retired to history, whose
stored message is the template; N more succeeded records written **directly in the history format**
(that message with fresh ids, pipelined publishes) — the state a week of finished jobs leaves, in
seconds instead of hours. Then everything is restarted (nats-server included) and the bench reports
how long nats-server took to be ready, the time from starting the services (once it is) to the first
new job done, and each process's RSS two seconds later.

Not included: the markers retired jobs leave in the `jobs` bucket for the fence (`JETSCHED_HISTORY_FENCE_S`,
120 s); they cost (completions/s × fence) entries, independent of the retention. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nats
import orjson

from jetsched.bus.connect import connect
from jetsched.bus.history import History
from jetsched.core import subjects
from jetsched.core.errors import NotFound
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobState
from jetsched.devkit import procs
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

HERE = Path(__file__).parent
CAPABILITY = "bench.noop"
WINDOW = 2000


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


async def first_job_done(url: str) -> None:
    """Submit (once intake answers) and wait for one no-op job to succeed."""
    async with Client(url, timeout=30) as client:
        await eventually(client.stats, timeout=60, what="intake answers")
        reply = await client.submit(CAPABILITY)
        await client.wait(reply.id, timeout=60)


async def template(url: str) -> bytes:
    """A real succeeded record, as the reaper stored it in history."""
    async with Client(url, timeout=30) as client:
        reply = await client.submit(CAPABILITY)
        await client.wait(reply.id, timeout=60)
    nc = await connect(url, "bench")
    try:

        async def stored() -> bytes:
            try:
                data, _ = await History(nc).get(reply.id)
            except NotFound:  # not retired yet
                return b""
            return data

        data = await eventually(stored, timeout=30, what="the template job retired")
    finally:
        await nc.close()
    return data.replace(reply.id.encode(), b"%ID%")


async def fill(url: str, body: bytes, n: int) -> float:
    """Write `n` succeeded records straight into history; returns records/s."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    started = time.perf_counter()
    for base in range(0, n, WINDOW):
        ids = [new_ulid(int(time.time() * 1000)) for _ in range(min(WINDOW, n - base))]
        await asyncio.gather(
            *(
                js.publish(
                    subjects.history(job_id, JobState.SUCCEEDED.value, CAPABILITY),
                    body.replace(b"%ID%", job_id.encode()),
                )
                for job_id in ids
            )
        )
    elapsed = time.perf_counter() - started
    await nc.close()
    return n / elapsed if elapsed else 0.0


async def measure(n: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="jetsched-scale-"))
    server = NatsServer(work / "js").start()
    children = start_stack(server, work)
    try:
        body = await template(server.url)
        if n:
            rate = await fill(server.url, body, n)
            print(f"  wrote {n:,} history records at {rate:,.0f}/s ({len(body)} B each)", flush=True)
        for child in children:
            child.terminate()
        server.stop()
        started = time.perf_counter()
        server.start()
        figures = {"server_ready_s": time.perf_counter() - started}
        started = time.perf_counter()
        children = start_stack(server, work)
        await first_job_done(server.url)
        figures["restart_to_first_job_s"] = time.perf_counter() - started
        await asyncio.sleep(2)  # let replays and start-up allocations settle
        assert server.proc is not None
        figures |= {f"{c.name}_mib": rss_mib(c.pid) for c in children if c.pid}
        figures["nats-server_mib"] = rss_mib(server.proc.pid)
        return figures
    finally:
        for child in children:
            child.terminate()
        server.stop()


async def main(counts: list[int]) -> None:
    today = datetime.date.today().isoformat()
    print(f"{today}, {platform.node()}, {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    results = {}
    for n in counts:
        print(f"{n:,} retained succeeded jobs:", flush=True)
        results[n] = await measure(n)
        print("  " + orjson.dumps(results[n]).decode(), flush=True)
    names = list(results[counts[0]])
    print("\n| retained | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for n, figures in results.items():
        print(f"| {n:,} | " + " | ".join(f"{figures[k]:.2f}" for k in names) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0 and 100,000 retained jobs")
    parser.add_argument("--jobs", type=int, nargs="*", help="retained job counts to measure")
    args = parser.parse_args()
    counts = args.jobs or ([0, 100_000] if args.quick else [0, 1_000_000])
    asyncio.run(main(counts))
