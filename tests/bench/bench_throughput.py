"""`make bench`: throughput, latency and NATS cost of jetsched on an embedded nats-server.

Prints, for JOBS no-op jobs through the whole pipeline (four service processes and one worker process):
submit rate, end-to-end completion rate, NATS messages per job; sequential submits per second from one
client, with the queue paused (the submit path alone) and with the pipeline running, each against a bare
request/reply round trip measured just before it; submit→start latency percentiles at a
steady RATE jobs/s; the CPU cost per message of the nats-py port's fast path against the public one; and the raw ceiling measured in the same run: one process doing publish + KV create +
fetch + CAS + ack + CAS per job as fast as nats-py allows. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nats
import uvloop
from nats.aio.msg import Msg
from nats.js import api

from jetsched.bus import natspy
from jetsched.bus.direct import Connection
from jetsched.devkit import procs
from jetsched.devkit.nats_server import NatsServer, free_port
from jetsched.sdk import Client

HERE = Path(__file__).parent
WINDOW = 1000
BATCH = 100


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def varz(port: int) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as reply:
        data = json.load(reply)
    return int(data["in_msgs"]), int(data["out_msgs"])


async def raw_ceiling(url: str, jobs: int) -> float:
    """publish + KV create + fetch + CAS + ack + CAS per job, pipelined in windows, one process."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="RAW", subjects=["raw.>"], retention=api.RetentionPolicy.WORK_QUEUE)
    kv = await js.create_key_value(bucket="raw", history=1)
    psub = await js.pull_subscribe("raw.q", durable="raw")
    body = b'{"payload": null, "state": "ready", "attempt": 0}' + b" " * 150
    started = time.perf_counter()
    for base in range(0, jobs, WINDOW):
        n = min(WINDOW, jobs - base)
        await asyncio.gather(*(js.publish("raw.q", body) for _ in range(n)))
        revs = await asyncio.gather(*(kv.create(f"j{base + i}", body) for i in range(n)))
        msgs: list[Msg] = []
        while len(msgs) < n:
            msgs += await psub.fetch(n - len(msgs), timeout=5)
        revs = await asyncio.gather(*(kv.update(f"j{base + i}", body, last=revs[i]) for i in range(n)))
        await asyncio.gather(*(m.ack() for m in msgs))
        await asyncio.gather(*(kv.update(f"j{base + i}", body, last=revs[i]) for i in range(n)))
    elapsed = time.perf_counter() - started
    await nc.close()
    return jobs / elapsed


async def round_trip_reference(url: str, count: int) -> float:
    """Sequential nats-py request/reply round trips per second to an echo in this process: the machine's
    pace in the same run, which the sequential submit rate is compared with."""
    nc = await nats.connect(url)

    async def echo(msg: Msg) -> None:
        await msg.respond(b'{"id": "x"}')

    await nc.subscribe("bench.echo", cb=echo)
    started = time.perf_counter()
    for _ in range(count):
        await nc.request("bench.echo", b"{}", timeout=5)
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed


async def sequential(client: Client, count: int) -> float:
    """One `await client.submit()` after another: submits per second."""
    started = time.perf_counter()
    for _ in range(count):
        await client.submit("bench.noop")
    return count / (time.perf_counter() - started)


async def port_cost(url: str, connection: type[Connection], count: int) -> float:
    """CPU µs per request and reply through one connection (both ends in this process), pipelined."""
    nc = connection()
    await nc.connect(url)

    def echo(subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        asyncio.get_running_loop().create_task(nc.publish(reply.decode(), data))

    await nc.subscribe_direct("bench.port", echo)
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await nc.request_raw("bench.port", b"x" * 200, 5, headers)
    cpu0 = time.process_time()
    for _ in range(0, count, BATCH):
        await asyncio.gather(*(nc.request_raw("bench.port", b"x" * 200, 5, headers) for _ in range(BATCH)))
    cpu = time.process_time() - cpu0
    await nc.close()
    return cpu * 1e6 / count


async def succeeded(client: Client) -> int:
    return (await client.stats()).jobs.get("succeeded", 0)


async def wait_succeeded(client: Client, count: int, timeout: float) -> None:
    """Polls the stats API (cheap) rather than watching every record (which would load the box)."""
    async with asyncio.timeout(timeout):
        while await succeeded(client) < count:  # noqa: ASYNC110 -- polls a remote API; no local event
            await asyncio.sleep(0.01)


async def settled(client: Client, timeout: float = 120) -> None:
    """Until no queue that is not paused has a job ready or running and every finished job has been
    retired to history: the reaper is caught up, so what is measured next does not share the machine
    with the last phase's backlog."""
    stats = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                stats = await client.stats()
                busy = sum(q.ready + q.running for q in stats.queues.values() if not q.paused)
                ended = stats.jobs.get("succeeded", 0) + stats.jobs.get("cancelled", 0)
                if not busy and (stats.history.jobs or 0) >= ended:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"not settled within {timeout:.0f}s: {stats}") from None


async def sequential_phase(client: Client, paused: bool) -> None:
    """Pause (the submit path alone: the created jobs wait) or resume `bench.noop`, then wait until the
    rest of the pipeline is quiet (`settled`), so the sequential measure that follows measures that."""
    await client.pause("bench.noop", paused)
    await asyncio.sleep(0.2)  # the dispatchers learn of it from the queue settings' feed
    await settled(client)


async def throughput(client: Client, jobs: int) -> tuple[float, float]:
    before = await succeeded(client)
    started = time.perf_counter()
    for base in range(0, jobs, WINDOW):
        await asyncio.gather(*(client.submit("bench.noop") for _ in range(min(WINDOW, jobs - base))))

    submitted = time.perf_counter()
    await wait_succeeded(client, before + jobs, timeout=600)
    finished = time.perf_counter()
    return jobs / (submitted - started), jobs / (finished - started)


async def throughput_batched(client: Client, jobs: int, batch: int) -> tuple[float, float]:
    """As `throughput`, submitting with `submit_many` in batches (still 1000 jobs in flight)."""
    before = await succeeded(client)
    started = time.perf_counter()
    for base in range(0, jobs, WINDOW):
        n = min(WINDOW, jobs - base)
        await asyncio.gather(
            *(client.submit_many("bench.noop", [None] * min(batch, n - i)) for i in range(0, n, batch))
        )
    submitted = time.perf_counter()
    await wait_succeeded(client, before + jobs, timeout=600)
    finished = time.perf_counter()
    return jobs / (submitted - started), jobs / (finished - started)


async def latency(client: Client, rate: int, seconds: float) -> list[float]:
    before = await succeeded(client)
    sent: dict[str, float] = {}
    interval = 1 / rate
    start = time.perf_counter()
    tasks = []

    async def one() -> None:
        at = time.time()
        reply = await client.submit("bench.stamp")
        sent[reply.id] = at

    for n in range(int(rate * seconds)):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    await wait_succeeded(client, before + len(sent), timeout=120)
    records = await asyncio.gather(*(client.get(i) for i in sent))
    return sorted((view.result - sent[view.id]) * 1000 for view in records)


async def delayed_lateness(client: Client, count: int, rate: int) -> list[float]:
    """Handler start − due time of delayed jobs (0.5–3 s delays) submitted at a steady rate."""
    before = await succeeded(client)
    rng = random.Random(3)
    ids: list[str] = []
    for _ in range(count):
        ids.append((await client.submit("bench.stamp", delay=rng.uniform(0.5, 3.0))).id)
        await asyncio.sleep(1 / rate)
    await wait_succeeded(client, before + count, timeout=120)
    views = await asyncio.gather(*(client.get(i) for i in ids))
    return sorted(view.result * 1000 - view.run_at.timestamp() * 1000 for view in views)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def start_stack(server: NatsServer, work: Path, concurrency: int) -> list[procs.Proc]:
    """The four services and one bench worker as processes (logging warnings only)."""
    env = {"PYTHONPATH": str(HERE), "JETSCHED_LOG_LEVEL": "WARNING"}
    children = [procs.service(name, server.url, work, env=env).start() for name in procs.SERVICES]
    children.append(
        procs.worker("bench_tasks", server.url, work, "--concurrency", str(concurrency), env=env).start()
    )
    return children


def process_ids(server: NatsServer, children: list[procs.Proc]) -> dict[str, int]:
    """Every process whose CPU a figure counts: the stack's, nats-server's and this one's."""
    assert server.proc is not None
    return {c.name: c.pid for c in children if c.pid} | {"nats-server": server.proc.pid, "bench": os.getpid()}


async def main(jobs: int, rate: int, seconds: float, concurrency: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="jetsched-bench-"))
    monitor = free_port()
    server = NatsServer(work / "js", monitor_port=monitor).start()
    print(f"nats-server {server.url}, {os.cpu_count()} cores, python {sys.version.split()[0]}", flush=True)
    try:
        ceiling = await raw_ceiling(server.url, jobs)
        print(f"raw ceiling (1 process, 5 JetStream ops + ack per job): {ceiling:,.0f} jobs/s", flush=True)

        fast = await port_cost(server.url, natspy.FastConnection, 20_000)
        public = await port_cost(server.url, Connection, 20_000)
        print(
            f"nats-py port: {fast:.0f} µs CPU per request+reply on the fast path, {public:.0f} on the public"
            f" one ({public / fast:.2f}×)",
            flush=True,
        )

        children = start_stack(server, work, concurrency)
        try:
            async with Client(server.url, timeout=30) as client:
                await client.list(limit=1)
                await throughput(client, 500)  # warm-up: connections, caches, JIT-free paths

                pids = process_ids(server, children)
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                in0, out0 = varz(monitor)
                submit_rate, e2e_rate = await throughput(client, jobs)
                in1, out1 = varz(monitor)
                cpu = {name: (cpu_seconds(pid) - cpu0[name]) * 1e6 / jobs for name, pid in pids.items()}
                print(f"\n{jobs:,} no-op jobs, 4 service processes + 1 worker (concurrency {concurrency}):")
                print(f"  submit rate        {submit_rate:>9,.0f} jobs/s (client pipelining {WINDOW})")
                print(
                    f"  end to end         {e2e_rate:>9,.0f} jobs/s ({e2e_rate / ceiling:.2f}× the raw ceiling)"
                )
                print(
                    f"  NATS msgs per job  {(in1 - in0) / jobs:>9.1f} in, {(out1 - out0) / jobs:.1f} out (server /varz)"
                )
                print(
                    "  round trips/job    5 awaited: submit, create, claim CAS, outcome publish, outcome CAS"
                )
                print("  CPU µs per job     " + "  ".join(f"{name} {us:.0f}" for name, us in cpu.items()))

                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                submit_rate, e2e_rate = await throughput_batched(client, jobs, BATCH)
                cpu_total = sum(cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()) * 1e6 / jobs
                print(f"\nthe same, submitted with submit_many in batches of {BATCH}:")
                print(f"  submit rate        {submit_rate:>9,.0f} jobs/s")
                print(
                    f"  end to end         {e2e_rate:>9,.0f} jobs/s ({e2e_rate / ceiling:.2f}× the raw ceiling)"
                )
                print(f"  CPU µs per job     {cpu_total:.0f} (all processes)")

                delayed = await delayed_lateness(client, 2000, 200)
                print("\ndelayed jobs end to end (handler start − due time, 2,000 jobs, 0.5–3 s delays):")
                print(
                    f"  p50 {pct(delayed, 50):.2f} ms   p99 {pct(delayed, 99):.2f} ms   max {delayed[-1]:.2f} ms   "
                    f"min {delayed[0]:.2f} ms (negative would be early)"
                )

                print(
                    "\nsequential submits from one client (against a bare request/reply measured just before):"
                )
                for label, paused in (
                    ("queue paused (the submit path alone)", True),
                    ("pipeline running", False),
                ):
                    await sequential_phase(client, paused)
                    reference = await round_trip_reference(server.url, 3000)
                    one_by_one = await sequential(client, 3000)
                    print(
                        f"  {label:37} {one_by_one:>6,.0f}/s ({one_by_one / reference:.2f}× a bare nats-py"
                        f" request/reply, {reference:,.0f}/s)"
                    )
                await settled(client)

                lat = await latency(client, rate, seconds)
                print(
                    f"\nsubmit→handler start at a steady {rate} jobs/s for {seconds:.0f}s ({len(lat)} jobs):"
                )
                print(
                    f"  p50 {pct(lat, 50):.2f} ms   p90 {pct(lat, 90):.2f} ms   p99 {pct(lat, 99):.2f} ms   "
                    f"max {lat[-1]:.2f} ms   mean {statistics.fmean(lat):.2f} ms"
                )
        finally:
            for child in reversed(children):
                child.terminate()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    uvloop.run(main(args.jobs, args.rate, args.seconds, args.concurrency))
