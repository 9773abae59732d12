"""`make bench-scale`: what retained history and pending jobs cost each process.

**Retained** (0 and 1,000,000 by default; `--quick`: 0 and 100,000; `--retained 0 10000000` for ten
million): a fresh nats-server, the four services and one no-op worker as processes; one job run through
the real pipeline and retired to history, whose stored message is the template; N more succeeded records
written **directly in the history format** (that message with fresh ids, pipelined publishes) — the state
a week of finished jobs leaves, in minutes instead of days. Then everything is restarted (nats-server
included) and the bench reports how long nats-server took to be ready, the time from starting the
services (once it is) to the first new job done, each process's RSS two seconds later, and the store's
size on disk. Not included: the markers retired jobs leave in the `jobs` bucket for the fence
(`JETSCHED_HISTORY_FENCE_S`, 120 s); they cost (completions/s × fence) entries, independent of the
retention.

**Pending** (1,000,000 delayed jobs by default; `--quick`: 100,000; `--pending N…`): see
`scale_pending.py` — RSS of every process before and after N jobs submitted with a delay of an hour or
more, and after a restart of the services, as bytes per pending job.

`--retained …` or `--pending …` alone runs only that part. Nothing is asserted.
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
from scale_pending import measure_pending
from scale_stack import CAPABILITY, first_job_done, rss_all, start_stack

from jetsched.bus.connect import connect
from jetsched.bus.history import History
from jetsched.core import subjects
from jetsched.core.errors import NotFound
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobState
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

WINDOW = 2000
#: How long nats-server may take to recover millions of history records on a restart.
RECOVERY_TIMEOUT_S = 900


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
        server.start(timeout=RECOVERY_TIMEOUT_S)
        figures = {"server_ready_s": time.perf_counter() - started}
        started = time.perf_counter()
        children = start_stack(server, work)
        await first_job_done(server.url)
        figures["restart_to_first_job_s"] = time.perf_counter() - started
        await asyncio.sleep(2)  # let replays and start-up allocations settle
        figures |= {f"{name}_mib": mib for name, mib in rss_all(children, server).items()}
        figures["store_gib"] = sum(f.stat().st_size for f in (work / "js").rglob("*") if f.is_file()) / 2**30
        return figures
    finally:
        for child in children:
            child.terminate()
        server.stop()


def table(label: str, rows: dict[int, dict[str, float]]) -> None:
    names = list(next(iter(rows.values())))
    print(f"\n| {label} | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for n, figures in rows.items():
        print(f"| {n:,} | " + " | ".join(f"{figures[k]:.2f}" for k in names) + " |")


async def main(retained: list[int], pending: list[int]) -> None:
    today = datetime.date.today().isoformat()
    print(f"{today}, {platform.node()}, {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    results = {}
    for n in retained:
        print(f"{n:,} retained succeeded jobs:", flush=True)
        results[n] = await measure(n)
        print("  " + orjson.dumps(results[n]).decode(), flush=True)
    if results:
        table("retained", results)
    for n in pending:
        print(f"\n{n:,} pending delayed jobs:", flush=True)
        figures = await measure_pending(n)
        print("  " + orjson.dumps(figures).decode(), flush=True)
        rows = {k: figures[k] for k in ("before_mib", "after_mib", "restarted_mib")}
        rows |= {k: figures[k] for k in ("bytes_per_job", "bytes_per_job_restarted")}
        names = list(figures["before_mib"])
        print(f"\n| {n:,} pending | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for label, row in rows.items():
            print(f"| {label} | " + " | ".join(f"{row[k]:.1f}" for k in names) + " |")
        print("  " + ", ".join(f"{k} {v:,.2f}" for k, v in figures["timings"].items()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0 and 100,000 retained, 100,000 pending")
    parser.add_argument(
        "--retained", "--jobs", type=int, nargs="*", help="retained job counts to measure (e.g. 0 10000000)"
    )
    parser.add_argument("--pending", type=int, nargs="*", help="pending delayed job counts to measure")
    args = parser.parse_args()
    if args.retained is None and args.pending is None:
        retained, pending = ([0, 100_000], [100_000]) if args.quick else ([0, 1_000_000], [1_000_000])
    else:
        retained, pending = args.retained or [], args.pending or []
    asyncio.run(main(retained, pending))
