"""The faults: each picks its target from what the cluster looks like at the moment it strikes (or from
the seeded RNG when nothing tells targets apart), applies the fault and names the hosts it affected —
the hosts cut off, killed or paused, plus every host whose NATS connection went to a node that was."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING

import nats
import orjson

from jetsched.core import subjects
from jetsched.devkit.zones import ZONES, Member

if TYPE_CHECKING:
    from .harness import Harness, Phases


class Scenario:
    """A fault: `inject` applies it and returns the hosts it affected; `heal` undoes it."""

    name = "scenario"
    #: A worker host cut off while running jobs, whose later reports must be fenced.
    zombie: str | None = None
    #: Hosts that cannot reach the majority at all during the fault (set by `inject`): they must start
    #: nothing new. Affected hosts not in it (clients of a killed node) reconnect elsewhere at once.
    cut: frozenset[str] = frozenset()

    def fault_s(self, phases: Phases) -> float:
        """How long the fault lasts before `heal`."""
        return phases.fault_s

    async def inject(self, h: Harness) -> set[str]:
        raise NotImplementedError

    async def heal(self, h: Harness) -> None:
        raise NotImplementedError


async def _pick_zone(h: Harness, leaders: bool, stream: str | None = None) -> int:
    """The zone whose node leads the most streams (or the fewest, preferring none), or `stream`."""
    counts = await h.leaders()
    order = sorted(ZONES, key=lambda z: (counts.get(z, 0), h.rng.random()), reverse=leaders)
    zone = order[0]
    if stream is not None:
        leader = await h.leader_of(stream)
        zone = next((z for z in ZONES if leader.endswith(str(z))), zone)
    h.outcome.target = f"zone {zone} (leads {counts.get(zone, 0)} of {sum(counts.values())} streams+meta)"
    return zone


async def _affected_by_zone(h: Harness, zone: int) -> set[str]:
    return {m.name for m in h.zones.members if m.zone == zone} | await h.clients_of(zone)


class Partition(Scenario):
    """Zone cut off from the other two and from clients: `ip link down` on its uplink (both ways), or
    iptables dropping everything it sends out of the zone (one way)."""

    def __init__(self, one_way: bool = False, leaders: bool = True) -> None:
        self.one_way = one_way
        self.leaders = leaders
        self.name = f"partition-{'oneway' if one_way else 'sym'}-{'leader' if leaders else 'follower'}"
        self.zone = 0

    async def inject(self, h: Harness) -> set[str]:
        self.zone = await _pick_zone(h, self.leaders)
        affected = await _affected_by_zone(h, self.zone)
        self.cut = frozenset(affected)
        await h.losing_node(self.zone)
        if self.one_way:
            h.zones.net.drop_outbound(self.zone)
        else:
            h.zones.net.cut_zone(self.zone)
        return affected

    async def heal(self, h: Harness) -> None:
        if self.one_way:
            h.zones.net.drop_outbound(self.zone, drop=False)
        else:
            h.zones.net.cut_zone(self.zone, cut=False)


class ZoneKill(Scenario):
    """A datacenter lost: its NATS node, services and workers `kill -9`ed at once; restarted on heal."""

    name = "zone-kill"

    def __init__(self) -> None:
        self.zone = 0

    async def inject(self, h: Harness) -> set[str]:
        self.zone = await _pick_zone(h, leaders=True)
        affected = await _affected_by_zone(h, self.zone)
        victims = h.zones.of(zone=self.zone)
        self.cut = frozenset(m.name for m in victims)
        await h.losing_node(self.zone)
        h.down |= {m.name for m in victims}
        for member in victims:
            member.proc.kill()
        return affected

    async def heal(self, h: Harness) -> None:
        await _restart_node(h, self.zone)
        for member in h.zones.of(zone=self.zone):
            if member.role != "nats":
                member.proc.start()
        h.down.clear()


class NodeKill(Scenario):
    """One NATS node `kill -9`ed — the one leading the most streams, the fewest, or a given stream —
    and restarted on heal; services and workers stay up and reconnect to the others."""

    def __init__(self, target: str = "leader") -> None:
        self.target = target
        self.name = f"node-kill-{target}"
        self.zone = 0

    async def inject(self, h: Harness) -> set[str]:
        stream = subjects.OUTCOMES_STREAM if self.target == "outcomes" else None
        self.zone = await _pick_zone(h, leaders=self.target != "follower", stream=stream)
        node = h.zones.node(self.zone)
        affected = {node.name} | await h.clients_of(self.zone)
        await h.losing_node(self.zone)
        h.down.add(node.name)
        node.proc.kill()
        return affected

    async def heal(self, h: Harness) -> None:
        await _restart_node(h, self.zone)


async def _restart_node(h: Harness, zone: int) -> None:
    node = h.zones.node(zone)
    node.proc.start()
    await asyncio.to_thread(h.zones.wait_log, node, "Server is ready", 30.0)
    h.down.discard(node.name)


class LeaderKills(Scenario):
    """Four kills in a minute: every ~14 s the node leading the most streams is `kill -9`ed and
    restarted 8 s later, so leadership moves again and again while load runs (a bad deploy, a flapping
    host). No supervisor may give up and every failover is judged like a single one."""

    name = "leader-kills"
    KILLS = 4
    EVERY_S = 14.0
    DOWN_S = 8.0

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        #: Filled in as the kills go (the harness keeps this very set as the fault's affected hosts).
        self.affected: set[str] = set()

    def fault_s(self, phases: Phases) -> float:
        return self.KILLS * self.EVERY_S

    async def inject(self, h: Harness) -> set[str]:
        self.task = asyncio.create_task(self._kills(h))
        await asyncio.sleep(0)
        h.outcome.target = f"{self.KILLS} leading nodes, one every {self.EVERY_S:.0f}s"
        return self.affected

    async def _kills(self, h: Harness) -> None:
        for n in range(self.KILLS):
            started = time.monotonic()
            counts = await h.leaders()
            zone = max(ZONES, key=lambda z: (counts.get(z, 0), h.rng.random()))
            node = h.zones.node(zone)
            self.affected |= {node.name} | await h.clients_of(zone)
            await h.losing_node(zone)
            h.down.add(node.name)
            node.proc.kill()
            await asyncio.sleep(self.DOWN_S)
            await _restart_node(h, zone)
            if n < self.KILLS - 1:
                await asyncio.sleep(max(0.0, self.EVERY_S - (time.monotonic() - started)))

    async def heal(self, h: Harness) -> None:
        assert self.task is not None
        await self.task
        h.outcome.affected = sorted(self.affected)


class NodePause(Scenario):
    """The NATS node leading the most streams stops (SIGSTOP) — a hung VM — and resumes (SIGCONT)."""

    name = "node-pause"

    def __init__(self) -> None:
        self.node: Member | None = None

    async def inject(self, h: Harness) -> set[str]:
        zone = await _pick_zone(h, leaders=True)
        self.node = h.zones.node(zone)
        affected = {self.node.name} | await h.clients_of(zone)
        # Its clients are stuck only until their pings go unanswered, then reconnect to another node:
        # they may start work again, so only the node itself counts as cut off.
        self.cut = frozenset({self.node.name})
        await h.losing_node(zone)
        self.node.pause()
        return affected

    async def heal(self, h: Harness) -> None:
        assert self.node is not None
        self.node.pause(False)


class WorkerZombie(Scenario):
    """A worker cut off from NATS while it runs jobs: they are rescued and rerun elsewhere while it
    finishes them; its reports, arriving after the heal, must be fenced out."""

    name = "worker-zombie"

    def __init__(self) -> None:
        self.member: Member | None = None

    async def inject(self, h: Harness) -> set[str]:
        busy = _running(h, time.time())
        workers = h.zones.of("worker")
        self.member = max(workers, key=lambda m: (busy.get(m.name, 0), h.rng.random()))
        self.zombie = self.member.name
        h.outcome.target = f"{self.zombie} (running {busy.get(self.zombie, 0)} jobs)"
        h.zones.net.cut_host(self.member.host)
        self.cut = frozenset({self.zombie})
        return set(self.cut)

    async def heal(self, h: Harness) -> None:
        assert self.member is not None
        h.zones.net.cut_host(self.member.host, cut=False)


class ServicePartition(Scenario):
    """The service replica holding the most shard leases (`role`) is cut off from NATS."""

    def __init__(self, role: str = "dispatcher") -> None:
        self.role = role
        self.name = f"service-partition-{role}"
        self.member: Member | None = None

    async def inject(self, h: Harness) -> set[str]:
        owners = await _lease_owners(h, self.role)
        replicas = h.zones.of(self.role)

        def held(m: Member) -> int:
            text = m.proc.log_path.read_text(errors="replace") if m.proc.log_path.exists() else ""
            return sum(n for instance, n in owners.items() if instance in text)

        self.member = max(replicas, key=lambda m: (held(m), h.rng.random()))
        h.outcome.target = f"{self.member.name} (holds {held(self.member)} of {sum(owners.values())} shards)"
        h.zones.net.cut_host(self.member.host)
        self.cut = frozenset({self.member.name})
        return set(self.cut)

    async def heal(self, h: Harness) -> None:
        assert self.member is not None
        h.zones.net.cut_host(self.member.host, cut=False)


def _running(h: Harness, now: float) -> Counter[str]:
    """Jobs each worker host has started and not finished, from the execution log."""
    open_runs: dict[tuple[str, int], str] = {}
    if h.exec_log.exists():
        for line in h.exec_log.read_text().splitlines():
            _, _, host, job, attempt, event = line.split()
            if event == "start":
                open_runs[(job, int(attempt))] = host
            else:
                open_runs.pop((job, int(attempt)), None)
    return Counter(open_runs.values())


async def _lease_owners(h: Harness, role: str) -> Counter[str]:
    """Shards of `role` per owning instance, from the leases bucket."""
    nc = await nats.connect([h.zones.node_url(z) for z in ZONES])
    try:
        kv = await nc.jetstream().key_value(subjects.LEASES_BUCKET)
        owners: Counter[str] = Counter()
        for key in await kv.keys():
            if key.startswith(f"{role}.shard."):
                entry = await kv.get(key)
                if entry.value:
                    owners[orjson.loads(entry.value)["owner"]] += 1
        return owners
    finally:
        await nc.close()


def all_scenarios() -> list[Scenario]:
    return [
        Partition(one_way=False, leaders=True),
        Partition(one_way=False, leaders=False),
        Partition(one_way=True, leaders=True),
        ZoneKill(),
        NodePause(),
        NodeKill("leader"),
        NodeKill("follower"),
        NodeKill("outcomes"),
        LeaderKills(),
        WorkerZombie(),
        ServicePartition("dispatcher"),
    ]


def named(name: str) -> Scenario:
    extra: list[Scenario] = [Partition(one_way=True, leaders=False), ServicePartition("reaper")]
    for scenario in [*all_scenarios(), *extra]:
        if scenario.name == name:
            return scenario
    raise KeyError(name)
