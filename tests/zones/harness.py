"""The zone harness: three zones (`jetsched.devkit.zones`), steady keyed load, one fault, heal, check.

`run_scenario()` builds the namespaces and starts every process from the root namespace, then runs the
load generator and the checker from a control host on the core bridge (`netns.inside`), so the harness
reaches the zones only over their own addresses. Timeline, each phase's length set by `Phases`:

    start, wait until a job runs end to end │ before │ fault │ after (healed, load on) │ drain │ check

Processes that exit on their own are restarted within a second, as a supervisor (systemd, Kubernetes)
would, and each exit is reported with its code. A process the fault took down stays down until healed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from jetsched.bus.connect import connect
from jetsched.bus.records import Records
from jetsched.core.models import JobState
from jetsched.devkit import netns
from jetsched.devkit.waiting import eventually
from jetsched.devkit.zones import ZONES, Zones
from jetsched.sdk import Client

from . import checker
from .elections import Elections, Reelections, groups

if TYPE_CHECKING:
    from .scenarios import Scenario

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "nats"
CAPABILITY = "zones.sleep"
DURATIONS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Service log messages counted per replica in the report.
EVENTS = ("rescued job", "quarantined", "outcome for an unknown job dropped")


@dataclass(frozen=True)
class Phases:
    before_s: float = 6.0
    fault_s: float = 12.0
    after_s: float = 10.0
    drain_s: float = 90.0


@dataclass
class Outcome:
    """One scenario run: the verdict plus what the services' logs and the nodes said."""

    scenario: str
    seed: int
    target: str = ""
    verdict: checker.Verdict = field(default_factory=checker.Verdict)
    exits: list[str] = field(default_factory=list)
    crashes: dict[str, list[str]] = field(default_factory=dict)
    #: Rescues by verdict and quarantined items, per service replica, from their logs.
    events: Counter[str] = field(default_factory=Counter)
    tracebacks: int = 0
    #: Reports of attempts since superseded, rejected by a reaper (fenced).
    stale_rejected: int = 0
    #: Reports rejected because their attempt's outcome was already applied (a redelivery).
    redelivered: int = 0
    zombie_expected: int = 0
    zombie_rejected: int = 0
    nodes_agree: bool = False
    disagreement: str = ""
    affected: list[str] = field(default_factory=list)
    fault_at: float = 0.0
    fault_s: float = 0.0
    #: Raft groups the lost node led, and those still without a new leader when the fault was healed.
    orphaned: list[str] = field(default_factory=list)
    unelected: list[str] = field(default_factory=list)
    #: Raft groups left leaderless after the heal (the rejoining node disrupting their leaders).
    reelected: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    work_dir: str = ""

    @property
    def problems(self) -> list[str]:
        found = list(self.verdict.problems)
        if not self.nodes_agree:
            found.append(f"nodes disagree after healing: {self.disagreement}")
        if self.exits:
            found.append(f"processes exited: {self.exits}")
        if self.tracebacks:
            found.append(f"{self.tracebacks} tracebacks in the service logs (a handler failed)")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems


def run_scenario(scenario: Scenario, seed: int, work_dir: Path, phases: Phases, rate: float) -> Outcome:
    """Build the zones, run `scenario` once, tear everything down; raises if zones cannot be built here."""
    netns.require()
    started = time.monotonic()
    net = netns.Net()
    zones: Zones | None = None
    try:
        env = {
            "JETSCHED_ZONES_LOG": str(work_dir / "executions.log"),
            "PYTHONPATH": str(Path(__file__).parent),
        }
        zones = Zones(
            net,
            sorted(DEPLOY.glob("cluster-*.conf")),
            work_dir,
            workers=2,
            worker_module="zone_worker",
            worker_args=("--concurrency", "4"),
            env=env,
        )
        zones.start_nodes()
        zones.start_rest()
        with netns.inside(zones.control.namespace):
            outcome = asyncio.run(Harness(zones, scenario, seed, phases, rate).run())
    finally:
        if zones is not None:
            zones.stop()
        net.close()
    outcome.wall_s = time.monotonic() - started
    outcome.work_dir = str(work_dir)
    return outcome


class Harness:
    def __init__(self, zones: Zones, scenario: Scenario, seed: int, phases: Phases, rate: float) -> None:
        self.zones = zones
        self.scenario = scenario
        self.phases = phases
        self.rate = rate
        self.load_rng = random.Random(seed)
        self.rng = random.Random(seed + 1)
        self.outcome = Outcome(scenario.name, seed)
        self.accepted: dict[str, float] = {}
        #: Members the fault took down on purpose; the supervisor leaves them alone.
        self.down: set[str] = set()
        self.clients: list[Client] = []
        self.fault_at = 0.0
        self.exec_log = zones.work_dir / "executions.log"
        #: Nodes lost during the fault, each watched until what it led is elected again.
        self.elections: list[Elections] = []
        self.watches: list[asyncio.Task[None]] = []
        self.healed = asyncio.Event()

    # -- the run --------------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        # Records are read as services read them: the jobs bucket, then history (a finished job moves).
        nc = await connect(",".join(self.zones.node_url(z) for z in ZONES), "zones-harness")
        records = Records.open(nc)
        self.clients = [Client(self.zones.node_url(z), timeout=3.0) for z in ZONES]
        for client in self.clients:
            await client.connect()
        supervisor = asyncio.create_task(self.supervise())
        try:
            await self.ready(records)
            stop = asyncio.Event()
            load = asyncio.create_task(self.load(stop))
            await asyncio.sleep(self.phases.before_s)
            fault_at = self.fault_at = time.time()
            affected = await self.scenario.inject(self)
            self.outcome.affected = sorted(affected)
            await asyncio.sleep(max(0.0, fault_at + self.scenario.fault_s(self.phases) - time.time()))
            heal_at = time.time()
            self.healed.set()
            await asyncio.gather(*self.watches)
            await self.scenario.heal(self)
            reelections = Reelections(self.jsz, ZONES)
            await reelections.watch(until=heal_at + self.phases.after_s)
            stop.set()
            await load
            drained = await self.drain(records)
            await self.check_nodes()
            await self.wait_zombies(drained, heal_at)
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            for client in self.clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
        majority = {m.name for m in self.zones.of("worker")} - self.scenario.cut
        window = checker.Window(
            fault_at,
            heal_at,
            self.phases.before_s,
            self.phases.after_s,
            affected,
            majority,
            set(self.scenario.cut),
            [(e.at, e.last()) for e in self.elections if e.orphaned],
            reelected=reelections.last(),
        )
        self.outcome.reelected = sorted(reelections.gaps)
        self.outcome.unelected += reelections.unrestored
        for e in self.elections:
            self.outcome.orphaned += e.orphaned
            self.outcome.unelected += e.missing()
        runs = checker.parse_runs(self.exec_log.read_text()) if self.exec_log.exists() else []
        self.outcome.verdict = checker.judge(runs, self.accepted, drained, window)
        self.read_logs(fault_at, drained)
        self.outcome.fault_at = fault_at
        self.outcome.fault_s = heal_at - fault_at
        return self.outcome

    async def ready(self, records: Records, timeout: float = 120.0) -> None:
        """Until one job has run end to end (streams declared, leaders elected, workers announced)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = await self.clients[0].submit(CAPABILITY, 0, key="zones-ready")
                record, _ = await records.get(reply.id)
                if record.state is JobState.SUCCEEDED:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the zones never ran a job within {timeout}s: see {self.zones.work_dir}")

    async def supervise(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for member in self.zones.members:
                popen = member.proc.popen
                if member.name in self.down or popen is None or popen.poll() is None:
                    continue
                when = "during start-up" if not self.fault_at else f"t{time.time() - self.fault_at:+.1f}s"
                self.outcome.exits.append(f"{member.name} rc={popen.returncode} {when}")
                member.proc.start()

    # -- load -----------------------------------------------------------------------------------------

    async def load(self, stop: asyncio.Event) -> None:
        submits: set[asyncio.Task[None]] = set()
        n = 0
        while not stop.is_set():
            task = asyncio.create_task(self.submit(f"{self.outcome.seed}-{n}", n))
            submits.add(task)
            task.add_done_callback(submits.discard)
            n += 1
            await asyncio.sleep(self.load_rng.expovariate(self.rate))
        await asyncio.gather(*submits)

    async def submit(self, key: str, n: int) -> None:
        """Resubmit (same key, next node) until answered, as a careful client does."""
        duration = self.load_rng.choice(DURATIONS)
        for attempt in range(200):
            client = self.clients[(n + attempt) % len(self.clients)]
            try:
                reply = await asyncio.wait_for(
                    client.submit(CAPABILITY, duration, key=key, max_attempts=20, backoff={"base_ms": 100}),
                    4.0,
                )
            except Exception:
                await asyncio.sleep(0.1)
                continue
            self.accepted.setdefault(reply.id, time.time())
            return

    # -- after healing --------------------------------------------------------------------------------

    async def drain(self, store: Records) -> dict[str, dict[str, Any]]:
        """Read every accepted job's record until all are terminal or `drain_s` passes."""
        records: dict[str, dict[str, Any]] = {}
        pending = set(self.accepted)
        deadline = time.monotonic() + self.phases.drain_s
        while pending and time.monotonic() < deadline:
            ids = sorted(pending)
            for chunk in range(0, len(ids), 200):
                batch = ids[chunk : chunk + 200]
                read = await asyncio.gather(*(store.get(i) for i in batch), return_exceptions=True)
                for job_id, got in zip(batch, read, strict=True):
                    if isinstance(got, BaseException):
                        continue  # not readable yet (a leader moving): read again
                    records[job_id] = record = got[0].model_dump(mode="json")
                    if record["state"] in checker.TERMINAL:
                        pending.discard(job_id)
            if pending:
                await asyncio.sleep(0.5)
        return records

    async def groups(self) -> dict[str, str]:
        """Every Raft group's leader, from the first node that answers."""
        for zone in ZONES:
            with contextlib.suppress(Exception):
                return groups(await self.jsz(zone))
        return {}

    async def losing_node(self, zone: int) -> None:
        """Called by a scenario just before it takes zone's node away: note what that node leads and
        watch the other nodes elect new leaders for it."""
        before = await self.groups()
        elections = Elections(self.jsz, zone, [z for z in ZONES if z != zone], before)
        self.elections.append(elections)
        self.watches.append(asyncio.create_task(elections.watch(self.healed)))

    async def jsz(self, zone: int) -> dict[str, Any]:
        url = self.zones.monitor_url(zone, "jsz?accounts=true&streams=true&consumers=true")

        def get() -> dict[str, Any]:
            with urllib.request.urlopen(url, timeout=2) as reply:
                data: dict[str, Any] = json.loads(reply.read())
                return data

        return await asyncio.to_thread(get)

    async def connz(self, zone: int) -> list[dict[str, Any]]:
        url = self.zones.monitor_url(zone, "connz?limit=4096")

        def get() -> list[dict[str, Any]]:
            with urllib.request.urlopen(url, timeout=2) as reply:
                found: list[dict[str, Any]] = json.loads(reply.read()).get("connections", [])
                return found

        return await asyncio.to_thread(get)

    @staticmethod
    def streams(jsz: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {
            s["name"]: s for a in jsz.get("account_details", []) for s in a.get("stream_detail", []) or []
        }

    async def leader_of(self, stream: str) -> str:
        """The server leading `stream`, as the first node that answers sees it."""
        return (await self.groups()).get(f"stream {stream}", "")

    async def leaders(self) -> Counter[int]:
        """Stream leaders per zone (the meta leader counts as one more)."""
        for zone in ZONES:
            with contextlib.suppress(Exception):
                data = await self.jsz(zone)
                counts: Counter[int] = Counter()
                for s in self.streams(data).values():
                    leader = (s.get("cluster") or {}).get("leader") or ""
                    if leader[-1:].isdigit():
                        counts[int(leader[-1])] += 1
                meta = (data.get("meta_cluster") or {}).get("leader") or ""
                if meta[-1:].isdigit():
                    counts[int(meta[-1])] += 1
                return counts
        return Counter()

    async def clients_of(self, zone: int) -> set[str]:
        """Hosts with a client connection to zone's node right now."""
        with contextlib.suppress(Exception):
            return {
                m.name
                for c in await self.connz(zone)
                if (m := self.zones.by_address(c.get("ip", ""))) is not None
            }
        return set()

    async def check_nodes(self, timeout: float = 20.0) -> None:
        """Every node reports the same last sequence for every stream (replicas converged)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                views = [self.streams(await self.jsz(z)) for z in ZONES]
            except Exception as exc:
                last = f"monitoring unreachable: {exc!r}"
                await asyncio.sleep(0.5)
                continue
            names = set().union(*views)
            differ = {
                n: [v.get(n, {}).get("state", {}).get("last_seq") for v in views]
                for n in sorted(names)
                if len({v.get(n, {}).get("state", {}).get("last_seq") for v in views}) > 1
            }
            if not differ:
                self.outcome.nodes_agree = True
                return
            last = "; ".join(f"{n} last_seq {seqs}" for n, seqs in differ.items())
            await asyncio.sleep(0.5)
        self.outcome.disagreement = last

    async def wait_zombies(
        self, records: dict[str, dict[str, Any]], heal_at: float, timeout: float = 10.0
    ) -> None:
        """Attempts a cut-off worker finished after they were taken from it: their reports must be
        rejected by the reapers (or never sent, if a cancel reached the worker first)."""
        if self.scenario.zombie is None or not self.exec_log.exists():
            return
        superseded = {
            (r.job_id, r.attempt)
            for r in checker.parse_runs(self.exec_log.read_text())
            if r.host == self.scenario.zombie
            and r.event == "end"
            and r.at < heal_at
            and records.get(r.job_id, {}).get("attempt", 0) > r.attempt
        }
        self.outcome.zombie_expected = len(superseded)
        with contextlib.suppress(TimeoutError):
            await eventually(lambda: superseded <= self.rejections(), timeout=timeout, interval=0.5)
        self.outcome.zombie_rejected = len(superseded & self.rejections())

    def rejections(self) -> set[tuple[str, int]]:
        found = set()
        for member in self.zones.of("reaper"):
            for line in _lines(member.proc.log_path):
                if "stale outcome rejected" in line:
                    with contextlib.suppress(ValueError, KeyError):
                        entry = orjson.loads(line)
                        found.add((entry["job"], int(entry["attempt"])))
        return found

    def read_logs(self, fault_at: float, records: dict[str, dict[str, Any]]) -> None:
        rejected = self.rejections()
        stale = {(j, a) for j, a in rejected if records.get(j, {}).get("attempt", 0) > a}
        self.outcome.stale_rejected = len(stale)
        self.outcome.redelivered = len(rejected - stale)
        for member in self.zones.members:
            if member.role == "nats":
                continue
            text = member.proc.log_path.read_text(errors="replace") if member.proc.log_path.exists() else ""
            self.outcome.tracebacks += text.count("Traceback")
            for line in text.splitlines():
                if any(f'"msg":"{event}"' in line for event in EVENTS):
                    with contextlib.suppress(orjson.JSONDecodeError):
                        entry = orjson.loads(line)
                        what = entry["msg"] + (f" ({entry['verdict']})" if "verdict" in entry else "")
                        self.outcome.events[f"{member.name} {what}"] += 1
                if '"actor crashed"' in line or '"service failed"' in line:
                    self.outcome.crashes.setdefault(member.name, []).append(_crash(line, fault_at))


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _crash(line: str, fault_at: float) -> str:
    """`t+12.3s leases:dispatcher NoRespondersError` (time from the fault), or `… service failed`."""
    try:
        entry = orjson.loads(line)
        at = datetime.fromisoformat(entry["ts"]).timestamp() - fault_at
    except (orjson.JSONDecodeError, KeyError, ValueError):
        return line[:200]
    exc = str(entry.get("exc", "")).strip().splitlines()
    last = exc[-1].split(":")[0].rsplit(".", 1)[-1] if exc else ""
    what = entry.get("actor") or entry.get("msg")
    return f"t{at:+.1f}s {what} {last}"
