"""Shard ownership by leases: which replica of a service does the work of which shard. Pure.

Each shard has a lease key; the replica that holds it renews it (a CAS write, so the key's revision
changes) every few hundred milliseconds. Every replica watches all the service's lease and membership
keys and judges expiry **by its own clock only**: a key whose revision has not changed for `ttl_ms` since
this replica first saw that revision is expired — no comparison of timestamps written by another host, so
clock skew between hosts cannot steal a live lease (the skew-free detector of NATS-NOTES §7).

Balance: live members (replicas renewing a membership key) split the shards evenly; a replica holding more
than its share releases the surplus, one holding less takes free or expired shards. Leases are about not
doing the same work twice, not about correctness: every action a shard owner takes is itself a CAS on the
record it acts on, so two replicas that briefly both believe they own a shard waste a write, nothing more.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from enum import StrEnum


def shard_of(key: str, shards: int) -> int:
    """The shard a key (job id, schedule id) belongs to: stable across processes and versions."""
    return zlib.crc32(key.encode()) % shards


@dataclass(slots=True)
class Seen:
    """A lease or membership key as this replica observed it."""

    owner: str | None
    revision: int
    #: This replica's clock when it first saw this revision.
    since_ms: int


class Verb(StrEnum):
    TAKE = "take"
    RENEW = "renew"
    RELEASE = "release"


@dataclass(frozen=True, slots=True)
class Action:
    verb: Verb
    shard: int
    #: The revision the CAS expects (0: the key must not exist).
    revision: int


class ShardTable:
    def __init__(self, me: str, shards: int, ttl_ms: int) -> None:
        self.me = me
        self.shards = shards
        self.ttl_ms = ttl_ms
        self.leases: dict[int, Seen] = {}
        self.members: dict[str, Seen] = {}

    def observe_lease(self, shard: int, owner: str | None, revision: int, now_ms: int) -> None:
        seen = self.leases.get(shard)
        if seen is None or seen.revision != revision or seen.owner != owner:
            self.leases[shard] = Seen(owner, revision, now_ms)

    def observe_member(self, member: str, revision: int | None, now_ms: int) -> None:
        if revision is None:
            self.members.pop(member, None)
            return
        seen = self.members.get(member)
        if seen is None or seen.revision != revision:
            self.members[member] = Seen(member, revision, now_ms)

    def live(self, seen: Seen, now_ms: int) -> bool:
        return now_ms - seen.since_ms <= self.ttl_ms

    def live_members(self, now_ms: int) -> set[str]:
        return {m for m, seen in self.members.items() if self.live(seen, now_ms)} | {self.me}

    def share(self, now_ms: int) -> int:
        return math.ceil(self.shards / len(self.live_members(now_ms)))

    def owned(self) -> set[int]:
        """Shards whose lease names this replica (as last observed)."""
        return {shard for shard, seen in self.leases.items() if seen.owner == self.me}

    def decide(self, now_ms: int) -> list[Action]:
        """Renew what this replica holds (up to its share), release the surplus, take what is free."""
        share = self.share(now_ms)
        mine = sorted(self.owned())
        actions = [Action(Verb.RENEW, s, self.leases[s].revision) for s in mine[:share]]
        actions += [Action(Verb.RELEASE, s, self.leases[s].revision) for s in mine[share:]]
        room = share - min(len(mine), share)
        for shard in range(self.shards):
            if room <= 0:
                break
            seen = self.leases.get(shard)
            if seen is None or seen.owner is None:
                actions.append(Action(Verb.TAKE, shard, seen.revision if seen else 0))
                room -= 1
            elif seen.owner != self.me and not self.live(seen, now_ms):
                actions.append(Action(Verb.TAKE, shard, seen.revision))
                room -= 1
        return actions
