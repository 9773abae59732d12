"""`make bench`: what a workflow step costs against a plain job, and a big map's memory.

Four service processes and one worker process on an embedded nats-server, as `bench_throughput.py`:

- STEPS plain no-op jobs, end to end (the baseline), and 3 × STEPS of them;
- one workflow fanning out from one step to STEPS − 2 and back into one (fan-out/fan-in), against the
  STEPS plain jobs;
- STEPS three-step chains, all submitted at once (a window at a time), against the 3 × STEPS plain jobs;
- one map over a MAP-element list, with every service's resident memory sampled throughout.

Each workload is timed from its first submit to its last step's success, and the CPU time every process
spent on it is read from /proc. A step's cost is that CPU (and wall) time per step, against a plain
job's measured just before it; ROUNDS such pairs, and the median and range of the ratios. The issue's
target is within 1.5×. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from bench_throughput import process_ids, start_stack, succeeded, wait_succeeded

from jetsched.devkit import procs
from jetsched.devkit.nats_server import NatsServer
from jetsched.sdk import Client, chain, chord, step

WINDOW = 200


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Meter:
    """Wall and CPU time (all processes) over one workload."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        #: CPU seconds per process over the last workload.
        self.split: dict[str, float] = {}

    async def measure(self, client: Client, steps: int, work: Any) -> tuple[float, float]:
        """Run `work()`, wait until `steps` more jobs succeeded; (wall s, CPU s) spent."""
        before = await succeeded(client)
        cpu0 = {name: cpu_seconds(p) for name, p in self.pids.items()}
        started = time.perf_counter()
        await work()
        await wait_succeeded(client, before + steps, timeout=900)
        wall = time.perf_counter() - started
        self.split = {name: cpu_seconds(p) - cpu0[name] for name, p in self.pids.items()}
        return wall, sum(self.split.values())

    def by_process(self, count: int) -> str:
        """The last workload's CPU per step, by process (where a step's cost goes)."""
        return "  µs CPU per step: " + "  ".join(f"{n} {s * 1e6 / count:,.0f}" for n, s in self.split.items())


async def windowed(calls: list[Any]) -> None:
    for base in range(0, len(calls), WINDOW):
        await asyncio.gather(*(call() for call in calls[base : base + WINDOW]))


async def main(steps: int, map_items: int, concurrency: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="jetsched-bench-wf-"))
    server = NatsServer(work / "js").start()
    print(f"nats-server {server.url}, {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    children = start_stack(server, work, concurrency)
    try:
        async with Client(server.url, timeout=60) as client:
            await client.list(limit=1)
            meter = Meter(process_ids(server, children))
            plain = [lambda: client.submit("bench.noop") for _ in range(steps)]
            await meter.measure(client, 300, lambda: windowed(plain[:300]))  # warm-up
            middle = [step(f"m{n}", "bench.noop") for n in range(steps - 2)]
            fan = chain(step("head", "bench.noop"), chord(middle, step("tail", "bench.noop")))
            three = chain(step("a", "bench.noop"), step("b", "bench.noop"), step("c", "bench.noop"))
            flows = [lambda: client.submit_workflow(three) for _ in range(steps)]
            more = plain * 3
            # Each workload right after its baseline, round after round: on a shared machine only a
            # ratio measured within one round means anything, and their spread says how much.
            ratios: dict[str, list[float]] = {"fan-out": [], "chain": []}
            for n in range(1, rounds + 1):
                print(f"\nround {n} of {rounds}")
                base_wall, base_cpu = await meter.measure(client, steps, lambda: windowed(plain))
                print(
                    f"{steps:,} plain no-op jobs: {base_wall:.2f} s, {base_cpu * 1e6 / steps:,.0f} µs CPU per job"
                )
                print(meter.by_process(steps))
                wall, cpu = await meter.measure(client, steps, lambda: client.submit_workflow(fan))
                title = f"1 fan-out/fan-in workflow of {steps:,} steps"
                ratios["fan-out"].append(report(title, steps, wall, cpu, base_wall, base_cpu))
                print(meter.by_process(steps))

                base_wall, base_cpu = await meter.measure(client, len(more), lambda: windowed(more))
                per_job = base_cpu * 1e6 / len(more)
                print(f"{len(more):,} plain no-op jobs: {base_wall:.2f} s, {per_job:,.0f} µs CPU per job")
                print(meter.by_process(len(more)))
                wall, cpu = await meter.measure(client, steps * 3, lambda: windowed(flows))
                title = f"{steps:,} three-step chains"
                ratios["chain"].append(report(title, steps * 3, wall, cpu, base_wall, base_cpu))
                print(meter.by_process(steps * 3))
            print("\nCPU per step ÷ a plain job's, each round's own baseline (median, range):")
            for name, found in ratios.items():
                print(
                    f"  {name:8} {statistics.median(found):.2f}×  ({min(found):.2f}–{max(found):.2f}, {len(found)} rounds)"
                )

            if map_items:
                await big_map(client, meter, map_items, meter.pids)
    finally:
        for child in reversed(children):
            child.terminate()
        server.stop()


def report(title: str, count: int, wall: float, cpu: float, base_wall: float, base_cpu: float) -> float:
    """Print a workload's cost per step against its baseline's; the CPU ratio."""
    print(
        f"{title}: {wall:.2f} s, {cpu * 1e6 / count:,.0f} µs CPU per step — per step "
        f"{wall / base_wall:.2f}× a plain job's wall time, {cpu / base_cpu:.2f}× its CPU"
    )
    return cpu / base_cpu


async def big_map(client: Client, meter: Meter, items: int, pids: dict[str, int]) -> None:
    services = {name: pid for name, pid in pids.items() if name in (*procs.SERVICES, "nats-server")}
    before = {name: rss_mib(pid) for name, pid in services.items()}
    peak = dict(before)
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            for name, pid in services.items():
                peak[name] = max(peak[name], rss_mib(pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    flow = chain(step("list", "bench.list", items), step("each", "bench.noop", map_over="list"))
    try:
        wall, cpu = await meter.measure(client, items + 2, lambda: client.submit_workflow(flow))
    finally:
        done.set()
        await sampler
    print(f"1 map over {items:,} elements: {wall:.2f} s, {cpu * 1e6 / items:,.0f} µs CPU per element")
    print("  RSS MiB before → peak: " + "  ".join(f"{n} {before[n]:.0f}→{peak[n]:.0f}" for n in services))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--map", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="baseline/workload pairs to measure")
    args = parser.parse_args()
    uvloop.run(main(args.steps, args.map, args.concurrency, args.rounds))
