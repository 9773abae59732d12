"""Timers armed on the wheel only for the shards this replica holds a lease on.

Every replica keeps every timer it has learnt of (`wanted`), so when a shard's lease moves here — a
replica died, or the fleet rebalanced — its timers are armed at once (past-due ones fire immediately),
and when it moves away they are disarmed. Keys are wheel keys; the shard comes from the job or schedule id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jetsched.core.shards import shard_of

if TYPE_CHECKING:
    from .driver import WheelDriver


class OwnedTimers:
    def __init__(self, driver: WheelDriver[str], shards: int) -> None:
        self.driver = driver
        self.shards = shards
        self.owned: set[int] = set()
        self.wanted: dict[str, tuple[int, int]] = {}

    def want(self, key: str, shard_key: str, due_ms: int) -> None:
        shard = shard_of(shard_key, self.shards)
        self.wanted[key] = (shard, due_ms)
        if shard in self.owned:
            self.driver.arm(key, due_ms)
        else:
            self.driver.disarm(key)

    def drop(self, key: str) -> None:
        if self.wanted.pop(key, None) is not None:
            self.driver.disarm(key)

    def own(self, owned: set[int]) -> None:
        gained, lost = owned - self.owned, self.owned - owned
        self.owned = owned
        for key, (shard, due_ms) in self.wanted.items():
            if shard in gained:
                self.driver.arm(key, due_ms)
            elif shard in lost:
                self.driver.disarm(key)
