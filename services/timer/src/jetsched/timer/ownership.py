"""Timers fired only for the shards this replica holds a lease on.

Every replica keeps every timer it has learnt of on its wheel, whatever its shard, so when a shard's
lease moves here — a replica died, or the fleet rebalanced — its timers are there already. A timer that
comes due while its shard is held elsewhere is *parked*, not fired: it fires at once if its shard comes
here, and leaves when its owner removes it (`drop`). Losing a shard needs no work: its timers park as
they come due.

The shard travels in the timer's data on the wheel (its low bits), so there is no map of timers beside
the wheel's own — a map of every pending timer cost ~190 B each (docs/scaling.md, "Pending jobs"); the
parked ones are only those due in other replicas' shards and not yet removed. Keys are wheel keys; the
shard comes from the job or schedule id (`shard_key`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jetsched.core.shards import shard_of

if TYPE_CHECKING:
    from collections.abc import Callable

    from .driver import WheelDriver

Fired = list[tuple[str, int, int]]


class OwnedTimers:
    def __init__(self, driver: WheelDriver[str], shards: int, on_due: Callable[[Fired], None]) -> None:
        """`driver` must hand what comes due to `fired`; `on_due` gets what fires here, with the data
        given to `want`."""
        self.driver = driver
        self.shards = shards
        self.on_due = on_due
        self.bits = max(1, (shards - 1).bit_length())
        self._mask = (1 << self.bits) - 1
        self.owned: set[int] = set()
        #: key → (due ms, data with its shard) of timers come due in shards held elsewhere
        self.parked: dict[str, tuple[int, int]] = {}

    def want(self, key: str, shard_key: str, due_ms: int, data: int = 0) -> None:
        """Arm `key` for `due_ms` (replacing what it was armed for), keeping `data` (an int ≥ 0) with it."""
        self.parked.pop(key, None)
        self.driver.arm(key, due_ms, data << self.bits | shard_of(shard_key, self.shards))

    def drop(self, key: str) -> None:
        self.parked.pop(key, None)
        self.driver.disarm(key)

    def own(self, owned: set[int]) -> None:
        gained = owned - self.owned
        self.owned = owned
        if gained:
            back = [(key, due) for key, due in self.parked.items() if due[1] & self._mask in gained]
            for key, (due_ms, data) in back:
                del self.parked[key]
                self.driver.arm(key, due_ms, data)  # past due: fires at once, here now

    def fired(self, fired: Fired) -> None:
        """What the wheel found due: fire what is ours, park the rest."""
        ours = []
        for key, due_ms, data in fired:
            if data & self._mask in self.owned:
                ours.append((key, due_ms, data >> self.bits))
            else:
                self.parked[key] = (due_ms, data)
        if ours:
            self.on_due(ours)
