"""What a 2,000-step workflow submit costs intake, and how long its event loop goes without a turn meanwhile.

An intake in this process (its collector's start-up heap frozen, as a service process's is), on an
embedded nats-server; a task sleeping 1 ms at a time measures the loop's stretches without a turn while a
workflow is submitted (`--together N`: N of them at once) — what any other request waits at worst. Three shapes of 2,000 steps: `wide` (no dependencies: every step is released at
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

import nats
import orjson

from jetsched.bus.config import BusConfig
from jetsched.core import subjects
from jetsched.devkit.nats_server import NatsServer
from jetsched.intake.service import IntakeService

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
    """How late each wake-up of a 1 ms sleep comes: the loop's stretches without a turn (a sleep, not a
    spin, so that the loop's idle time is not counted as CPU)."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.001)
        found.append(max(0.0, time.perf_counter() - before - 0.001))


async def main(steps: int, rounds: int, together: int) -> None:
    server = NatsServer(Path(tempfile.mkdtemp(prefix="jetsched-bench-")) / "js").start()
    intake = IntakeService(BusConfig(nats_url=server.url))
    serving = asyncio.create_task(intake.run())
    try:
        await asyncio.wait_for(intake.started.wait(), 20)
        gc.collect()
        gc.freeze()
        nc = await nats.connect(server.url)
        try:
            await nc.request(subjects.WORKFLOW_SUBMIT, orjson.dumps(workflow("wide", 10)), timeout=10)
            print(f"{steps}-step workflow submits, {together} at once, {rounds} rounds each: median (max)")
            for shape in SHAPES:
                cpu, wall, longest = [], [], []
                for _ in range(rounds):
                    # Sent as bytes: the collector then sees intake's objects only, as in its own process.
                    body = orjson.dumps(workflow(shape, steps))
                    stop, found = asyncio.Event(), list[float]()
                    watching = asyncio.create_task(stretches(stop, found))
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    replies = await asyncio.gather(
                        *(nc.request(subjects.WORKFLOW_SUBMIT, body, timeout=60) for _ in range(together))
                    )
                    cpu.append(time.process_time() - cpu0)
                    wall.append(time.perf_counter() - wall0)
                    stop.set()
                    await watching
                    longest.append(max(found))
                    assert all(orjson.loads(r.data).get("state") == "running" for r in replies), replies[
                        0
                    ].data
                print(
                    f"  {shape:5}: CPU {statistics.median(cpu) * 1000:.0f} ms, wall"
                    f" {statistics.median(wall) * 1000:.0f} ms, longest stretch without a turn of the loop"
                    f" {statistics.median(longest) * 1000:.0f} ms ({max(longest) * 1000:.0f})",
                    flush=True,
                )
        finally:
            await nc.close()
    finally:
        intake.stop()
        await asyncio.wait_for(serving, 30)
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--together", type=int, default=1, help="workflows submitted at once")
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.rounds, args.together))
