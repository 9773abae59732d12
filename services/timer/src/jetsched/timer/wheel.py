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
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimingWheel(Generic[K]):
    def __init__(self, tick_ms: int = 1, wheel_size: int = 256, start_ms: int = 0) -> None:
        if tick_ms < 1 or wheel_size < 2:
            raise ValueError("tick_ms >= 1 and wheel_size >= 2")
        self.tick_ms = tick_ms
        self.wheel_size = wheel_size
        self.now_ms = start_ms
        self._current = start_ms // tick_ms
        self._buckets: dict[tuple[int, int], dict[K, int]] = {}
        # key → its bucket (the dict itself, not its coordinates: one reference, no tuple per timer).
        self._where: dict[K, dict[K, int]] = {}
        self._expirations: list[tuple[int, int, int]] = []

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def add(self, key: K, due_ms: int) -> bool:
        """Arm `key` for `due_ms`. False (and nothing stored) if that time has already come."""
        self.cancel(key)
        if due_ms <= self.now_ms:
            return False
        self._place(key, due_ms, -(-due_ms // self.tick_ms))
        return True

    def cancel(self, key: K) -> bool:
        bucket = self._where.pop(key, None)
        if bucket is None:
            return False
        del bucket[key]  # an emptied bucket stays until its expiration comes round, then is dropped
        return True

    def next_expiration(self) -> int | None:
        """When the driver must next call `advance` (ms), or None when the wheel is empty."""
        heap = self._expirations
        while heap and not self._buckets.get((heap[0][1], heap[0][2])):
            _, level, block = heapq.heappop(heap)
            self._buckets.pop((level, block), None)
        return heap[0][0] * self.tick_ms if heap else None

    def advance(self, to_ms: int) -> list[tuple[K, int]]:
        """Move time to `to_ms`; return (key, due_ms) of every entry now due, in bucket order."""
        if to_ms <= self.now_ms:
            return []
        target = to_ms // self.tick_ms
        fired: list[tuple[K, int]] = []
        heap = self._expirations
        while heap and heap[0][0] <= target:
            tick, level, block = heapq.heappop(heap)
            bucket = self._buckets.pop((level, block), None)
            if not bucket:
                continue
            self._current = max(self._current, tick)
            for key, due_ms in bucket.items():
                del self._where[key]
                due_tick = -(-due_ms // self.tick_ms)
                if due_tick <= target:
                    fired.append((key, due_ms))
                else:
                    self._place(key, due_ms, due_tick)
        self._current = target
        self.now_ms = to_ms
        return fired

    def cascade_pending(self, horizon_ms: int) -> bool:
        """Whether a higher-level bucket expires within `horizon_ms` and can be moved down ahead of time."""
        limit = (self.now_ms + horizon_ms) // self.tick_ms
        return any(
            level > 0 and tick <= limit and self._buckets.get((level, block))
            for tick, level, block in self._expirations
        )

    def cascade(self, budget: int, horizon_ms: int) -> int:
        """Move up to `budget` entries of higher-level buckets expiring within `horizon_ms` to the lower
        levels they already fit in, so no single `advance` has to move a huge bucket at once.

        Returns how many moved. Entries that do not fit lower yet stay; they move on a later call or at
        their bucket's expiration. Firing semantics are unchanged: only where an entry waits moves.
        """
        limit = (self.now_ms + horizon_ms) // self.tick_ms
        soon = sorted(e for e in self._expirations if e[1] > 0 and e[0] <= limit)
        moved = 0
        for _, level, block in soon:
            bucket = self._buckets.get((level, block))
            stuck: list[tuple[K, int]] = []
            while bucket and moved < budget and len(stuck) < 64:
                key, due_ms = bucket.popitem()
                due_tick = -(-due_ms // self.tick_ms)
                if self._level_of(due_tick)[0] >= level:
                    stuck.append((key, due_ms))
                    continue
                self._place(key, due_ms, due_tick)
                moved += 1
            if bucket is not None:
                bucket.update(stuck)
            if moved >= budget:
                break
        return moved

    def _level_of(self, due_tick: int) -> tuple[int, int]:
        level, unit = 0, 1
        while due_tick // unit - self._current // unit >= self.wheel_size:
            level += 1
            unit *= self.wheel_size
        return level, unit

    def _place(self, key: K, due_ms: int, due_tick: int) -> None:
        level, unit = self._level_of(due_tick)
        block = due_tick // unit
        bucket = self._buckets.get((level, block))
        if bucket is None:
            bucket = self._buckets[(level, block)] = {}
            heapq.heappush(self._expirations, (block * unit, level, block))
        bucket[key] = due_ms
        self._where[key] = bucket
