"""When JetStream had elected new leaders for what a lost node led: the yardstick for failover.

A node that is cut off, killed or paused leaves its Raft groups (the meta group, streams, replicated
consumers) leaderless until the others notice and elect — 4–9 s in nats-server (a random election
timeout after missed heartbeats), outside our control. What *is* ours is how fast job starts resume once
that is done, so the checker measures the stall from the last of those elections (`Window.elected_s`).

`groups()` reads one node's `/jsz` view; `Elections` polls the surviving nodes while the fault lasts
and keeps, per group the lost node led, the first moment one of them named a new leader elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

#: How often the surviving nodes are asked (a finer grain than the 1 s slack being checked).
POLL_S = 0.2

Jsz = Callable[[int], Awaitable[dict[str, Any]]]


def groups(jsz: dict[str, Any]) -> dict[str, str]:
    """Raft group → its leader's server name, as one node sees it ("" while it knows none).

    Ephemeral (R1) consumers are left out: they are not elected but recreated by their clients."""
    found = {"meta": (jsz.get("meta_cluster") or {}).get("leader") or ""}
    for account in jsz.get("account_details", []) or []:
        for stream in account.get("stream_detail", []) or []:
            found[f"stream {stream['name']}"] = (stream.get("cluster") or {}).get("leader") or ""
            for consumer in stream.get("consumer_detail", []) or []:
                cluster = consumer.get("cluster") or {}
                if cluster.get("replicas"):
                    found[f"consumer {stream['name']}/{consumer['name']}"] = cluster.get("leader") or ""
    return found


def zone_of(server: str) -> int | None:
    """The zone a server name (`n1`, `jetsched-2` …) belongs to: its trailing digit."""
    return int(server[-1]) if server[-1:].isdigit() else None


class _Views:
    jsz: Jsz

    async def _view(self, zone: int) -> dict[str, str]:
        try:
            return groups(await asyncio.wait_for(self.jsz(zone), 1.0))
        except Exception:
            return {}


class Elections(_Views):
    """Watch the surviving nodes re-elect what the node of `zone` led before the fault."""

    def __init__(self, jsz: Jsz, zone: int, survivors: Iterable[int], before: dict[str, str]) -> None:
        self.jsz = jsz
        self.zone = zone
        #: When the node was lost (set just before the fault is applied).
        self.at = time.time()
        self.survivors = list(survivors)
        #: Groups the lost node led: each needs an election.
        self.orphaned = sorted(g for g, leader in before.items() if zone_of(leader) == zone)
        self.elected: dict[str, float] = {}

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and len(self.elected) < len(self.orphaned):
            views = await asyncio.gather(*(self._view(z) for z in self.survivors))
            now = time.time()
            for view in views:
                for group in self.orphaned:
                    leader = view.get(group, "")
                    if group not in self.elected and leader and zone_of(leader) != self.zone:
                        self.elected[group] = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

    def last(self) -> float | None:
        """When the last group got its new leader; None while one has none."""
        if len(self.elected) < len(self.orphaned):
            return None
        return max(self.elected.values(), default=self.at)

    def missing(self) -> list[str]:
        return [g for g in self.orphaned if g not in self.elected]


class Reelections(_Views):
    """After the heal: groups the rejoining node left leaderless (it comes back having campaigned, or
    with stale terms, and leaders step down), and when each had a leader again."""

    def __init__(self, jsz: Jsz, zones: Iterable[int]) -> None:
        self.jsz = jsz
        self.zones = list(zones)
        #: Group → (when no node named a leader any more, when one did again).
        self.gaps: dict[str, tuple[float, float]] = {}
        self.unrestored: list[str] = []

    async def watch(self, until: float) -> None:
        leaderless: dict[str, float] = {}
        while time.time() < until:
            views = [v for v in await asyncio.gather(*(self._view(z) for z in self.zones)) if v]
            now = time.time()
            for group in set().union(*views):
                if not any(v.get(group) for v in views):
                    leaderless.setdefault(group, now)
                elif group in leaderless:
                    self.gaps[group] = (leaderless.pop(group), now)
            await asyncio.sleep(POLL_S)
        self.unrestored = sorted(leaderless)

    def last(self) -> float | None:
        """When the last group left leaderless had a leader again (None: none was)."""
        return max((end for _, end in self.gaps.values()), default=None)
