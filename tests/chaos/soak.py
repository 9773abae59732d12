"""Chaos soak: load, random `kill -9`s and restarts, then a check of every accepted job against an
execution log kept outside NATS.

    python -m tests.chaos.soak --seconds 120 --seed 7      # `make chaos`

Two replicas of every service and three probe workers run around one nats-server. For `--seconds` a load
generator submits jobs and workflows — chains, fan-ins and maps (each with an idempotency key,
resubmitted until answered) — while a driver, drawing
from a seeded RNG, kills a random service replica, worker or the nats-server itself with SIGKILL and
restarts it (the server on the same store). Then the chaos stops, everything is brought back, and the
checker waits for every accepted job to finish and prints:

- accepted, completed (succeeded), lost (accepted but never finished: must be 0);
- executed twice, each with its cause as the record tells it (a lost worker, a released claim);
- stale reports the reapers rejected;
- the time from a worker's death to its jobs starting again elsewhere (max, p99);
- every workflow's invariants, checked from the execution log (`workflows.py`): all ended, no step
  started before its parents ended, none run twice without a worker fault, results passed along.

The seed is printed first, so a failing run can be replayed with `--seed`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jetsched.core import schedules, subjects
from jetsched.core.schedules import ScheduleSpec
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

from .workflows import WorkflowLoad, WorkflowReport

WORKERS = 3


@dataclass
class Report:
    seed: int
    accepted: int = 0
    completed: int = 0
    dead: int = 0
    lost: list[str] = field(default_factory=list)
    twice: dict[str, str] = field(default_factory=dict)
    stale_rejected: int = 0
    restart_delays: list[float] = field(default_factory=list)
    #: Worker deaths whose jobs took over 3 s to rerun, with the other kills in that window.
    slow_reruns: list[str] = field(default_factory=list)
    #: A 1 s interval schedule run through the chaos: fires, duplicates (must be 0), unexplained gaps (0).
    schedule_fires: int = 0
    schedule_duplicates: int = 0
    schedule_gaps: int = 0
    #: How late the timer created fires (ms after their nominal time): the latest of the last 50 fires.
    schedule_max_late_ms: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    workflows: WorkflowReport = field(default_factory=WorkflowReport)

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and self.accepted > 0
            and not self.schedule_duplicates
            and not self.schedule_gaps
            and self.workflows.ok
        )

    def lines(self) -> list[str]:
        delays = sorted(self.restart_delays)
        p50 = delays[len(delays) // 2] if delays else 0.0
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else 0.0
        causes = Counter(self.twice.values())
        return [
            f"seed                {self.seed}",
            f"kills               {dict(self.kills)}",
            f"accepted            {self.accepted}",
            f"completed           {self.completed} succeeded, {self.dead} dead",
            f"lost                {len(self.lost)}" + (f"  {self.lost[:5]}" if self.lost else ""),
            f"executed twice      {len(self.twice)}" + (f"  causes: {dict(causes)}" if causes else ""),
            f"stale reports       {self.stale_rejected} rejected",
            f"schedule (1 s)      {self.schedule_fires} fires, {self.schedule_duplicates} duplicated, "
            f"{self.schedule_gaps} nominal times unaccounted for, latest fire {self.schedule_max_late_ms} ms late",
            f"worker death→rerun  p50 {p50:.2f}s  p99 {p99:.2f}s  max {max(delays, default=0.0):.2f}s"
            f"  ({len(delays)} jobs)",
            *(f"  slow: {line}" for line in self.slow_reruns[:10]),
            self.workflows.line(),
            *(f"  violation: {line}" for line in self.workflows.violations[:10]),
            *(f"  unfinished: {workflow_id}" for workflow_id in self.workflows.unfinished[:5]),
        ]


class Soak:
    def __init__(
        self, work_dir: Path, seed: int, seconds: float, rate: float, workflow_rate: float = 2.0
    ) -> None:
        self.rng = random.Random(seed)
        self.workflows = WorkflowLoad(random.Random(seed + 1), workflow_rate)
        self.report = Report(seed)
        self.seconds = seconds
        self.rate = rate
        self.server = NatsServer(work_dir / "jetstream")
        self.work_dir = work_dir
        self.fleet: Fleet | None = None
        self.accepted: dict[str, str] = {}
        self.worker_deaths: list[tuple[float, int]] = []
        self.events: list[tuple[float, str]] = []

    async def run(self) -> Report:
        self.server.start()
        fleet = self.fleet = Fleet(self.server.url, self.work_dir).start_services(copies=2)
        for _ in range(WORKERS):
            fleet.worker("--concurrency", "4")
        try:
            # Up to a minute for intake to answer: a dozen processes start at once, slow on a busy machine.
            async with Client(self.server.url, timeout=60) as starting:
                await starting.list(limit=1)
            async with Client(self.server.url, timeout=10) as client:
                await client.list(limit=1)
                await client.create_schedule("soak-beat", "probe.sleep", None, every=1.0, misfire="all")
                stop = asyncio.Event()
                load = asyncio.create_task(self.load(client, stop))
                flows = asyncio.create_task(self.workflows.run(client, stop))
                await self.chaos(stop)
                await load
                await flows
                self.heal()
                await self.check(client)
        finally:
            fleet.stop()
            self.server.stop()
        return self.report

    async def load(self, client: Client, stop: asyncio.Event) -> None:
        submits: set[asyncio.Task[None]] = set()
        n = 0
        while not stop.is_set():
            task = asyncio.create_task(self.submit(client, f"soak-{n}"))
            submits.add(task)
            task.add_done_callback(submits.discard)
            n += 1
            await asyncio.sleep(self.rng.expovariate(self.rate))
        await asyncio.gather(*submits)

    async def submit(self, client: Client, key: str) -> None:
        duration = round(self.rng.choice([0, 0, 0.01, 0.05, 0.2, 1.0]), 3)
        delay = self.rng.choice([None, None, None, 0.2, 1.0])
        for _ in range(60):
            try:
                reply = await client.submit(
                    "probe.sleep", duration, key=key, delay=delay, max_attempts=10, backoff={"base_ms": 100}
                )
            except Exception:
                await asyncio.sleep(0.5)
                continue
            self.accepted[reply.id] = key
            return

    async def chaos(self, stop: asyncio.Event) -> None:
        assert self.fleet is not None
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(0.5, 2.5))
            roll = self.rng.random()
            at = time.time()
            if roll < 0.1:
                self.events.append((at, "nats-server"))
                self.report.kills["nats-server"] += 1
                self.server.kill()
                await asyncio.sleep(self.rng.uniform(0.1, 1.0))
                self.server.start()
            elif roll < 0.45:
                victim = self.rng.choice(self.fleet.workers)
                if victim.alive() and victim.pid is not None:
                    self.worker_deaths.append((time.time(), victim.pid))
                self.report.kills["worker"] += 1
                self.events.append((at, "worker"))
                victim.kill()
                await asyncio.sleep(self.rng.uniform(0.0, 1.0))
                victim.start()
            else:
                victim = self.rng.choice(self.fleet.services)
                self.report.kills[victim.name] += 1
                self.events.append((at, victim.name))
                victim.kill()
                await asyncio.sleep(self.rng.uniform(0.0, 1.0))
                victim.start()
        stop.set()

    def heal(self) -> None:
        assert self.fleet is not None
        for proc in self.fleet.services + self.fleet.workers:
            if not proc.alive():
                proc.start()

    async def check(self, client: Client) -> None:
        assert self.fleet is not None
        records: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        pending = set(self.accepted)
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                try:
                    record = (await client.request(subjects.api("jobs.get"), {"id": job_id}))["job"]
                except Exception:
                    continue
                if record["state"] in ("succeeded", "dead", "cancelled"):
                    records[job_id] = record
                    pending.discard(job_id)
            if pending:
                await asyncio.sleep(0.5)
        report = self.report
        report.accepted = len(self.accepted)
        report.lost = sorted(pending)
        report.completed = sum(r["state"] == "succeeded" for r in records.values())
        report.dead = sum(r["state"] == "dead" for r in records.values())
        starts: dict[str, list[tuple[float, int]]] = defaultdict(list)
        ends: set[tuple[str, int]] = set()
        for run in self.fleet.runs():
            if run.event == "start":
                starts[run.job_id].append((run.at, run.pid))
            else:
                ends.add((run.job_id, run.pid))
        for job_id, runs in starts.items():
            if len(runs) > 1 and job_id in records:
                kinds = {e["kind"] for e in records[job_id].get("errors", [])}
                cause = "+".join(sorted(kinds)) or (
                    "released" if records[job_id].get("releases") else "unexplained"
                )
                report.twice[job_id] = cause
        for died_at, pid in self.worker_deaths:
            for job_id, runs in starts.items():
                cut = [at for at, p in runs if p == pid and at < died_at and (job_id, pid) not in ends]
                later = [at for at, p in runs if p != pid and at > died_at]
                if cut and later:
                    delay = min(later) - died_at
                    report.restart_delays.append(delay)
                    if delay > 3.0:
                        near = [
                            f"{what}@{at - died_at:+.1f}s"
                            for at, what in self.events
                            if -3 < at - died_at < delay
                        ]
                        report.slow_reruns.append(f"{job_id} {delay:.2f}s; kills around: {', '.join(near)}")
        await self.check_schedule(client)
        report.workflows = await self.workflows.check(client, self.fleet.runs())
        for log in self.work_dir.glob("reaper-*.log"):
            report.stale_rejected += log.read_text(errors="replace").count("stale outcome rejected")

    async def check_schedule(self, client: Client) -> None:
        """Every nominal second of the soak was dealt with exactly once: one job, or a recorded miss."""
        report = self.report
        healed_ms = int(time.time() * 1000)

        async def fired_since_heal() -> bool:
            last = (await client.schedule("soak-beat")).last_fire
            return last is not None and last.timestamp() * 1000 >= healed_ms

        await eventually(fired_since_heal, timeout=30, what="the schedule firing after the chaos")
        await client.schedule("soak-beat", "pause")
        # The record as stored, to replay its fires through the timer's own arithmetic.
        record = (await client.request(subjects.api("schedules.get"), {"id": "soak-beat"}))["schedule"]
        jobs: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            body = {"limit": 1000, "capability": "probe.sleep", "after": after}
            page = await client.request(subjects.api("jobs.list"), {k: v for k, v in body.items() if v})
            jobs += [j for j in page["jobs"] if j.get("schedule_id")]
            if (after := page["next"]) is None:
                break
        # A job that moved to history between two pages is listed twice (once live, once from history):
        # the same job, created once. A fire created again would be a second creation of its id.
        created = {(j["id"], j["created_at_ms"]): j["fire_at_ms"] for j in jobs}
        nominal = Counter(created.values())
        report.schedule_fires = len(nominal)
        report.schedule_duplicates = sum(n - 1 for n in nominal.values())
        missed = {e["nominal_ms"] for e in record["history"] if e["missed"]}
        spec = ScheduleSpec.model_validate(record["spec"])
        expected = schedules.fires(
            spec, record["anchor_ms"], record["anchor_ms"], record["last_fire_ms"], 10**6
        )
        report.schedule_gaps = sum(t not in nominal and t not in missed for t in expected)
        report.schedule_max_late_ms = max(
            (e["at_ms"] - e["nominal_ms"] for e in record["history"]), default=0
        )


async def soak(seconds: float, seed: int, rate: float, work_dir: Path | None = None) -> Report:
    directory = work_dir or Path(tempfile.mkdtemp(prefix="jetsched-chaos-"))
    print(f"chaos soak: seed {seed}, {seconds:.0f}s, ~{rate:.0f} jobs/s, logs in {directory}", flush=True)
    return await Soak(directory, seed, seconds, rate).run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1_000_000))
    parser.add_argument("--rate", type=float, default=40.0, help="jobs submitted per second")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the load generator's own reconnect chatter
    report = asyncio.run(soak(args.seconds, args.seed, args.rate))
    print("\n".join(report.lines()))
    unexplained = [j for j, cause in report.twice.items() if cause == "unexplained"]
    sys.exit(0 if report.ok and not unexplained else 1)


if __name__ == "__main__":
    main()
