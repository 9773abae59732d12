"""Spreading the record partitions' stream leaders over the cluster's nodes.

Every write of a job's record goes to its partition's stream leader, and JetStream elects each leader
among the stream's replicas wherever the elections put it: nothing spreads them, so the P partitions of a
three-node cluster may all be led by one node, whose CPU and disk then take every record write while the
others only follow (scaling.md). So one process at a time — the reaper replica holding partition 0 —
looks every `INTERVAL_S`, and while some node leads two or more partitions more than another node that
replicates one of them, asks one such stream's leader to step down in favour of that node
(`$JS.API.STREAM.LEADER.STEPDOWN` with `placement.preferred`, nats-server ≥ 2.11). One move per look:
the election settles between looks, and a move that did not take (the preferred node lagging, an
election lost) is seen and tried again. A stepdown costs the stream a leader election — a few hundred
milliseconds in which its writes wait (they are retried like any failover's) — so it is asked only for
an imbalance, never to tidy an even spread. A single server has no cluster: nothing to move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from nats.errors import Error as NatsError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from jetsched.core.clock import Clock

    from .direct import Connection

log = logging.getLogger(__name__)

#: How often the leaders are looked at (a stream's election settles well within it).
INTERVAL_S = 10.0
REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Led:
    """A stream, the server leading it (None: no leader now), and the servers that could lead it: its
    leader and its replicas that are current."""

    stream: str
    leader: str | None
    peers: tuple[str, ...]


def move(streams: Sequence[Led]) -> tuple[str, str] | None:
    """(stream, server) of one leadership move that evens out how many streams each server leads, or
    None when no server leads two or more than a peer of one of its streams. Pure."""
    load = {peer: 0 for s in streams for peer in s.peers}
    for s in streams:
        if s.leader is not None:
            load[s.leader] = load.get(s.leader, 0) + 1
    for s in sorted(streams, key=lambda s: (-load.get(s.leader or "", 0), s.stream)):
        if s.leader is None:
            continue
        target = min(s.peers, key=lambda peer: (load[peer], peer))
        if load[s.leader] - load[target] >= 2:
            return s.stream, target
    return None


def led(stream: str, info: dict[str, Any]) -> Led:
    """A stream's leadership as its `STREAM.INFO` reply tells it."""
    cluster = info.get("cluster") or {}
    leader = cluster.get("leader") or None
    replicas = [
        r.get("name") for r in cluster.get("replicas") or () if r.get("current") and not r.get("offline")
    ]
    peers = tuple(p for p in (leader, *replicas) if isinstance(p, str))
    return Led(stream, leader if isinstance(leader, str) else None, peers)


class LeaderSpreader:
    """An actor: looks at the streams' leaders now and then and moves one if they are bunched."""

    name = "leaders"

    def __init__(
        self,
        nc: Connection,
        streams: Sequence[str],
        active: Callable[[], bool],
        clock: Clock,
        interval_s: float = INTERVAL_S,
    ) -> None:
        """`active()`: whether this process is the one that looks now (a lease it holds)."""
        self.nc = nc
        self.streams = tuple(streams)
        self.active = active
        self.clock = clock
        self.interval_s = interval_s
        self.moved = 0

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.interval_s)
            if self.active() and len(self.streams) > 1:
                try:
                    await self.look()
                except (NatsError, TimeoutError, ValueError) as exc:  # the next look tries again
                    log.info("stream leaders not looked at", extra={"error": repr(exc)})

    async def look(self) -> tuple[str, str] | None:
        """Move one leader if they are bunched; the move asked for, if any."""
        infos = [await self._request(f"$JS.API.STREAM.INFO.{stream}") for stream in self.streams]
        found = move([led(stream, info) for stream, info in zip(self.streams, infos, strict=True)])
        if found is not None:
            stream, server = found
            answer = await self._request(
                f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", {"placement": {"preferred": server}}
            )
            if answer.get("success"):
                self.moved += 1
            log.info(
                "stream leader moved" if answer.get("success") else "stream leader not moved",
                extra={"stream": stream, "to": server, "answer": str(answer.get("error", ""))[:200]},
            )
        return found

    async def _request(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data, _ = await self.nc.request_raw(subject, orjson.dumps(body) if body else b"", REQUEST_TIMEOUT_S)
        answer = orjson.loads(data)
        if not isinstance(answer, dict):
            raise ValueError(f"{subject}: not a JSON object: {data[:200]!r}")
        return answer
