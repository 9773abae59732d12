"""The shard-lease actor: keeps this replica's share of a service's shards, reports what it owns.

Decisions are `core.shards.ShardTable`'s (pure); this shell watches the service's keys in the `leases`
bucket, renews its membership key, and executes takes, renewals and releases as CAS writes. A shard
counts as owned only while this replica renewed it within the TTL by its own clock, so a replica cut off
from NATS stops working its shards about when the others start taking them over. On a graceful stop it
releases its shards so the others take them at once instead of after a TTL.

What if it dies here? Its leases simply stop being renewed; after a TTL the others take them. Two
replicas briefly owning one shard is harmless: everything done for a shard is itself a CAS.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import orjson
from nats.errors import Error as NatsError

from jetsched.core import subjects
from jetsched.core.errors import Conflict
from jetsched.core.ids import ULID_RE
from jetsched.core.shards import ShardTable, Verb

from .feed import KeyFeed
from .records import Store, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext

    from jetsched.core.clock import Clock

    from .direct import Connection

log = logging.getLogger(__name__)

DEFAULT_TTL_MS = 2000


class ShardLeaser:
    def __init__(
        self,
        nc: Connection,
        js: JetStreamContext,
        service: str,
        instance: str,
        shards: int,
        clock: Clock,
        on_change: Callable[[set[int]], None],
        ttl_ms: int = DEFAULT_TTL_MS,
    ) -> None:
        self.name = f"leases:{service}"
        self.nc = nc
        self.store = Store(nc, subjects.LEASES_BUCKET)
        self.js = js
        self.service = service
        self.instance = instance
        self.clock = clock
        self.on_change = on_change
        self.table = ShardTable(instance, shards, ttl_ms)
        self.renewed: dict[int, int] = {}
        self.owned: set[int] = set()

    def _observe(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        now = self.clock.now_ms()
        kind, _, ident = key[len(self.service) + 1 :].partition(".")
        # Only keys of the shapes replicas write count: a member is an instance id (a lower-case ULID), a
        # shard its number. Anything else in the bucket — nobody but the services may write there, but
        # a JetStream ack sent to a forged reply subject once could — must not pass for a live replica.
        if kind == "shard" and ident.isdigit() and int(ident) < self.table.shards:
            self.table.observe_lease(int(ident), _owner(data), revision, now)
        elif kind == "member" and _member(ident, data):
            self.table.observe_member(ident, revision if data else None, now)

    async def run(self) -> None:
        feed = KeyFeed(self.nc, self.js, subjects.LEASES_BUCKET, self._observe, keys=f"{self.service}.>")
        await feed.start()
        try:
            await feed.caught_up.wait()
            while True:
                await self.tick()
                await self.clock.sleep(self.table.ttl_ms / 4000)
        finally:
            await feed.stop()
            with contextlib.suppress(Exception):
                await self.release_all()

    async def tick(self) -> None:
        now = self.clock.now_ms()
        # Storage errors (no responders or a timeout while a stream leader is elected) skip a turn:
        # a lease not renewed lapses on its own; they must never crash this actor.
        with contextlib.suppress(StoreError, TimeoutError, NatsError):
            await self.store.put(self._member_key(), b"{}")
        for action in self.table.decide(now):
            key = f"{self.service}.shard.{action.shard}"
            try:
                if action.verb is Verb.RELEASE:
                    await self.store.purge(key, action.revision)
                    self.renewed.pop(action.shard, None)
                    continue
                value = orjson.dumps({"owner": self.instance})
                revision = await self.store.put_if(key, value, action.revision)
            except (Conflict, StoreError, TimeoutError, NatsError):
                continue
            self.table.observe_lease(action.shard, self.instance, revision, now)
            self.renewed[action.shard] = now
            if action.verb is Verb.TAKE:
                log.info("took shard", extra={"service": self.service, "shard": action.shard})
        self._publish(now)

    def _publish(self, now: int) -> None:
        owned = {s for s, at in self.renewed.items() if now - at <= self.table.ttl_ms}
        if owned != self.owned:
            self.owned = owned
            self.on_change(set(owned))

    async def release_all(self) -> None:
        for shard in sorted(self.renewed):
            seen = self.table.leases.get(shard)
            if seen is not None and seen.owner == self.instance:
                with contextlib.suppress(Exception):
                    await self.store.purge(f"{self.service}.shard.{shard}", seen.revision)
        self.renewed.clear()
        self._publish(self.clock.now_ms())
        with contextlib.suppress(Exception):
            _, revision = await self.store.get(self._member_key())
            await self.store.purge(self._member_key(), revision)

    def _member_key(self) -> str:
        return f"{self.service}.member.{self.instance}"


class Members:
    """The live replicas of another kind of lease (membership keys renewed within the TTL, judged by
    this replica's clock as `ShardTable` judges them), watched without taking part in it."""

    def __init__(
        self, nc: Connection, js: JetStreamContext, service: str, clock: Clock, ttl_ms: int = DEFAULT_TTL_MS
    ) -> None:
        self.clock = clock
        self.table = ShardTable("", 0, ttl_ms)
        self._prefix = f"{service}.member."
        self.feed = KeyFeed(nc, js, subjects.LEASES_BUCKET, self._observe, keys=f"{self._prefix}>")

    def _observe(self, key: str, revision: int, data: bytes | None, headers: dict[str, str] | None) -> None:
        ident = key[len(self._prefix) :]
        if _member(ident, data):
            self.table.observe_member(ident, revision if data else None, self.clock.now_ms())

    def live(self) -> int:
        now = self.clock.now_ms()
        return sum(1 for seen in self.table.members.values() if self.table.live(seen, now))


def _member(ident: str, data: bytes | None) -> bool:
    """Whether a membership key is one a replica writes: named by an instance id (a lower-case ULID),
    holding `{}` (or removed). Anything else — nobody but the services may write the bucket, but a
    JetStream ack sent to a forged reply subject can (docs/security.md) — is no replica."""
    return ident == ident.lower() and bool(ULID_RE.match(ident.upper())) and data in (None, b"{}")


def _owner(data: bytes | None) -> str | None:
    """A shard lease's owner, as replicas write it (`{"owner": id}`); None for a released lease or for
    a value no replica writes (a forged reply's ack), which holds the shard for nobody."""
    if not data:
        return None
    try:
        owner = orjson.loads(data).get("owner")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return owner if isinstance(owner, str) else None
