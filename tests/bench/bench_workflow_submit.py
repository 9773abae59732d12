"""What a 2,000-step workflow submit costs intake, and how long its event loop goes without a turn meanwhile.

An intake in this process (its collector's start-up heap frozen, as a service process's is), on an
embedded nats-server; a task that only yields measures the loop's stretches between its turns while a
workflow is submitted. Three shapes of 2,000 steps: `wide` (no dependencies: every step is released at
once), `chain` (each on the one before) and `dense` (each on the ten before: ~20,000 edges). Nothing here
is asserted; `tests/integration/test_workflow_submit_turns.py` is the check.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jetsched.bus.config import BusConfig
from jetsched.core import subjects
from jetsched.devkit.nats_server import NatsServer
from jetsched.intake.service import IntakeService
from jetsched.sdk import Client

SHAPES = ("wide", "chain", "dense")


def workflow(shape: str, steps: int) -> dict[str, Any]:
    names = [f"step-{n:04d}" for n in range(steps)]
    parents = {"wide": 0, "chain": 1, "dense": 10}[shape]
    return {
        "steps": [
            {
                "name": name,
                "capability": "bench.noop",
                "payload": {"n": n},
                "depends_on": names[max(0, n - parents) : n],
            }
            for n, name in enumerate(names)
        ]
    }


async def stretches(stop: asyncio.Event, found: list[float]) -> None:
    before = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0)
        now = time.perf_counter()
        found.append(now - before)
        before = now


async def main(steps: int, rounds: int) -> None:
    server = NatsServer(Path(tempfile.mkdtemp(prefix="jetsched-bench-")) / "js").start()
    intake = IntakeService(BusConfig(nats_url=server.url))
    serving = asyncio.create_task(intake.run())
    try:
        await asyncio.wait_for(intake.started.wait(), 20)
        gc.collect()
        gc.freeze()
        async with Client(server.url, timeout=60) as client:
            await client.request(subjects.WORKFLOW_SUBMIT, workflow("wide", 10))
            print(f"{steps}-step workflow submits, {rounds} rounds each: median (max)")
            for shape in SHAPES:
                cpu, wall, longest = [], [], []
                for _ in range(rounds):
                    body = workflow(shape, steps)
                    stop, found = asyncio.Event(), list[float]()
                    watching = asyncio.create_task(stretches(stop, found))
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    await client.request(subjects.WORKFLOW_SUBMIT, body)
                    cpu.append(time.process_time() - cpu0)
                    wall.append(time.perf_counter() - wall0)
                    stop.set()
                    await watching
                    longest.append(max(found))
                print(
                    f"  {shape:5}: CPU {statistics.median(cpu) * 1000:.0f} ms, wall"
                    f" {statistics.median(wall) * 1000:.0f} ms, longest stretch without a turn of the loop"
                    f" {statistics.median(longest) * 1000:.0f} ms ({max(longest) * 1000:.0f})",
                    flush=True,
                )
    finally:
        intake.stop()
        await asyncio.wait_for(serving, 30)
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.rounds))
