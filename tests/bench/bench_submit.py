"""Sequential submits from one client, with the queue paused (the submit path alone) and running.

Prints, per round and mode, submits per second, a bare nats-py request/reply round trip measured just
before (the machine's pace in that moment), their ratio, and every process's CPU µs per submit. With
`--profile DIR`, py-spy (`PY_SPY`, raw format, for flame graphs) records the bench client, intake and
the dispatcher during the last paused round. Used to measure changes to the submit path
(docs/performance.md, "A single submit"); `make bench` prints the same two figures once.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import uvloop
from bench_throughput import (
    cpu_seconds,
    process_ids,
    round_trip_reference,
    sequential,
    sequential_phase,
    start_stack,
)

from jetsched.devkit.nats_server import NatsServer
from jetsched.sdk import Client

PY_SPY = os.environ.get("PY_SPY", "py-spy")
PROFILED = ("bench", "intake", "dispatcher")


def spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` until it is sent SIGINT."""
    argv = [PY_SPY, "record", "-f", "raw", "-r", "500", "--nonblocking", "-o", str(output), "--pid", str(pid)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(spies: list[subprocess.Popen[bytes]]) -> None:
    for one in spies:
        one.send_signal(signal.SIGINT)
        one.wait()


async def main(rounds: int, count: int, profile: Path | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="jetsched-seq-"))
    server = NatsServer(work / "js").start()
    children = start_stack(server, work, 200)
    try:
        async with Client(server.url, timeout=30) as client:
            await client.list(limit=1)
            await sequential(client, 500)
            pids = process_ids(server, children)
            for n in range(rounds):
                for mode in ("paused", "running"):
                    await sequential_phase(client, mode == "paused")
                    reference = await round_trip_reference(server.url, 2000)
                    spies = []
                    if profile is not None and mode == "paused" and n == rounds - 1:
                        spies = [spy(pids[name], profile / f"{name}.raw") for name in PROFILED]
                        await sequential(client, 200)  # while py-spy attaches
                    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    rate = await sequential(client, count)
                    cpu = {name: (cpu_seconds(pid) - cpu0[name]) * 1e6 / count for name, pid in pids.items()}
                    stop(spies)
                    print(
                        f"{mode:8} {rate:6,.0f}/s  bare {reference:6,.0f}/s  ratio {rate / reference:.2f}"
                        "  CPU µs per submit: " + " ".join(f"{name} {us:.0f}" for name, us in cpu.items()),
                        flush=True,
                    )
    finally:
        for child in reversed(children):
            child.terminate()
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    uvloop.run(main(args.rounds, args.count, args.profile))
