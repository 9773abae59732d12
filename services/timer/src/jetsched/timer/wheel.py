"""A hierarchical timing wheel (Varghese & Lauck 1987; Kafka's `TimingWheel`), as a pure data structure.

Time is cut into ticks of `tick_ms`. Level 0 has `wheel_size` buckets of one tick each; level L has
buckets spanning `wheel_size**L` ticks. An entry goes to the lowest level whose window (the current block
and the next `wheel_size - 1` blocks of that level) reaches its due tick. When the current time reaches the
start of a level-L bucket, the bucket is emptied: entries now due are returned, the rest cascade to lower
levels, where they are finer-grained. Levels exist only as far as entries need them (overflow wheels made
lazily). Non-empty buckets sit in a small heap ordered by the tick at which they must be looked at (Kafka's
DelayQueue of buckets), so the driver sleeps until `next_expiration()` instead of ticking idly.

Worked example, tick 1 ms, wheel_size 4, now 0:
- due 3 ms → tick 3, level 0 (3 - 0 < 4): bucket (0, 3), looked at when time reaches 3 ms.
- due 9 ms → level 1 (9 // 4 - 0 // 4 = 2 < 4): bucket (1, 2) covering ticks 8..11, looked at at 8 ms;
  then it cascades to level 0 bucket (0, 9) and fires at 9 ms.
- due 70 ms → level 3 (70 // 64 - 0 = 1 < 4, level 2 would need 70 // 16 = 4 < 4): bucket (3, 1) at 64 ms.

Never early: a due time is rounded *up* to a tick (`ceil(due / tick)`), and an entry is returned only by
an `advance(to_ms)` with `to_ms >= due`. At most one tick late, plus however late the driver wakes.
Cancel is O(1) and frees the entry at once (a dict delete), which matters when heartbeats and retries
reschedule constantly; `add` on a key already present moves it.

Compact: an entry is its key and one int — the due time in the low `DUE_BITS`, and above them whatever
non-negative int `data` its owner gave `add` (the timer packs a timer entry's facts there), handed back
by `advance`. With a 26-character id that is ~190 B per entry in all (docs/scaling.md, "Pending jobs"):
the owner needs no map of its own beside the wheel's.

Cascading in bounded chunks. Moving a big bucket down a level all at once (~1M timers) would block a
CPython loop for a third of a second. So a higher-level bucket keeps its entries grouped by the lower
level's block they belong to, and as soon as a group fits the lower level's window — one level-span
before its own time, long before the bucket's boundary — `cascade(budget)` moves it down, at most
`budget` entries per call. Only groups that fit are touched (no scanning of entries that cannot move yet),
so by the boundary almost everything has gone down already, whatever the distribution of due times.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

#: The low bits of an entry's int hold its due time (ms); the owner's data sits above them.
DUE_BITS = 64
_DUE_MASK = (1 << DUE_BITS) - 1


class TimingWheel(Generic[K]):
    def __init__(self, tick_ms: int = 1, wheel_size: int = 256, start_ms: int = 0) -> None:
        if tick_ms < 1 or wheel_size < 2:
            raise ValueError("tick_ms >= 1 and wheel_size >= 2")
        self.tick_ms = tick_ms
        self.wheel_size = wheel_size
        self.now_ms = start_ms
        self._current = start_ms // tick_ms
        # (level, block) → {lower-level block → {key → due ms | data << DUE_BITS}}; level 0 buckets have
        # one group (block 0).
        self._buckets: dict[tuple[int, int], dict[int, dict[K, int]]] = {}
        # key → the group dict holding it: one reference per timer, no coordinates to allocate.
        self._where: dict[K, dict[K, int]] = {}
        self._expirations: list[tuple[int, int, int]] = []

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def add(self, key: K, due_ms: int, data: int = 0) -> bool:
        """Arm `key` for `due_ms`, keeping `data` (an int ≥ 0) with it. False (and nothing stored) if that
        time has already come."""
        self.cancel(key)
        if due_ms <= self.now_ms:
            return False
        if not 0 <= due_ms <= _DUE_MASK or data < 0:
            raise ValueError("0 <= due_ms < 2**64 and data >= 0")
        self._place(key, due_ms | data << DUE_BITS, -(-due_ms // self.tick_ms))
        return True

    def cancel(self, key: K) -> bool:
        group = self._where.pop(key, None)
        if group is None:
            return False
        del group[key]  # emptied groups and buckets are dropped when their time comes round
        return True

    def next_expiration(self) -> int | None:
        """When the driver must next call `advance` (ms), or None when the wheel is empty."""
        heap = self._expirations
        while heap:
            _, level, block = heap[0]
            bucket = self._buckets.get((level, block))
            if bucket is not None and any(bucket.values()):
                return heap[0][0] * self.tick_ms
            heapq.heappop(heap)
            self._buckets.pop((level, block), None)
        return None

    def advance(self, to_ms: int) -> list[tuple[K, int, int]]:
        """Move time to `to_ms`; return (key, due_ms, data) of every entry now due, in bucket order."""
        if to_ms <= self.now_ms:
            return []
        target = to_ms // self.tick_ms
        fired: list[tuple[K, int, int]] = []
        heap = self._expirations
        while heap and heap[0][0] <= target:
            tick, level, block = heapq.heappop(heap)
            bucket = self._buckets.pop((level, block), None)
            if not bucket:
                continue
            self._current = max(self._current, tick)
            for group in bucket.values():
                for key, value in group.items():
                    del self._where[key]
                    due_ms = value & _DUE_MASK
                    due_tick = -(-due_ms // self.tick_ms)
                    if due_tick <= target:
                        fired.append((key, due_ms, value >> DUE_BITS))
                    else:
                        self._place(key, value, due_tick)
        self._current = target
        self.now_ms = to_ms
        return fired

    def cascade(self, budget: int) -> int:
        """Move up to `budget` entries of the next higher-level buckets to the lower level they now fit.

        Returns how many moved (0: nothing fits yet). Where an entry waits changes, never when it fires.
        """
        moved = 0
        for sub_unit, bucket in self._upcoming():
            for sub in sorted(bucket):
                if sub - self._current // sub_unit >= self.wheel_size:
                    break  # this group (and every later one) does not fit the lower level yet
                group = bucket[sub]
                while group and moved < budget:
                    key, value = group.popitem()
                    self._place(key, value, -(-(value & _DUE_MASK) // self.tick_ms))
                    moved += 1
                if group:
                    return moved
                del bucket[sub]
            if moved >= budget:
                break
        return moved

    def next_cascade(self) -> int | None:
        """When (ms) the next group of an upcoming higher-level bucket will fit lower, or None."""
        soonest: int | None = None
        for sub_unit, bucket in self._upcoming():
            live = [sub for sub, group in bucket.items() if group]
            if live:
                at = max(min(live) - self.wheel_size + 1, 0) * sub_unit * self.tick_ms
                soonest = at if soonest is None else min(soonest, at)
        return soonest

    def _upcoming(self) -> list[tuple[int, dict[int, dict[K, int]]]]:
        """(lower-level unit, bucket) of each higher-level bucket whose block is its level's next, soonest first."""
        found = []
        for tick, level, block in self._expirations:
            unit = self.wheel_size**level
            bucket = self._buckets.get((level, block))
            if level and bucket and block == self._current // unit + 1:
                found.append((tick, unit // self.wheel_size, bucket))
        found.sort(key=lambda item: item[0])
        return [(sub_unit, bucket) for _, sub_unit, bucket in found]

    def _place(self, key: K, value: int, due_tick: int) -> None:
        level, unit = 0, 1
        while due_tick // unit - self._current // unit >= self.wheel_size:
            level += 1
            unit *= self.wheel_size
        block = due_tick // unit
        bucket = self._buckets.get((level, block))
        if bucket is None:
            bucket = self._buckets[(level, block)] = {}
            heapq.heappush(self._expirations, (block * unit, level, block))
        sub = due_tick // (unit // self.wheel_size) if level else 0
        group = bucket.get(sub)
        if group is None:
            group = bucket[sub] = {}
        group[key] = value
        self._where[key] = group
