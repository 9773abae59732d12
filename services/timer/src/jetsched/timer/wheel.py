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
Compact: an entry is its key and one int in one dict (`_entries`) — the due time in the low `DUE_BITS`,
and above them whatever non-negative int `data` its owner gave `add` (the timer packs a timer entry's
facts there), handed back by `advance` — plus the key's place in a plain list in its bucket. With a
26-character id that is ~170 B per entry in all (docs/scaling.md, "Pending jobs"); the owner needs no
map of its own beside the wheel's.

Cancel is O(1) and frees the entry's int at once (a dict delete); `add` on a key already present moves
it. The bucket lists are cleaned lazily: a list slot whose key is gone, or now due in another group (it
was moved), is skipped when its group's time comes round, so a moved or cancelled entry leaves 8 bytes
(and a reference to its key) in its old list until then. A key in two lists (moved back into the same
group) fires once: firing removes it from `_entries`, and the second slot finds it gone.

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
        # (level, block) → {lower-level block → [key, …]}; level 0 buckets have one group (block 0).
        self._buckets: dict[tuple[int, int], dict[int, list[K]]] = {}
        # key → due ms | data << DUE_BITS: the entries themselves.
        self._entries: dict[K, int] = {}
        self._expirations: list[tuple[int, int, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def add(self, key: K, due_ms: int, data: int = 0) -> bool:
        """Arm `key` for `due_ms`, keeping `data` (an int ≥ 0) with it. False (and nothing stored) if that
        time has already come."""
        if due_ms <= self.now_ms:
            self.cancel(key)
            return False
        if not 0 <= due_ms <= _DUE_MASK or data < 0:
            raise ValueError("0 <= due_ms < 2**64 and data >= 0")
        old = self._entries.get(key)
        self._entries[key] = due_ms | data << DUE_BITS
        if old is None or old & _DUE_MASK != due_ms:  # the same due time: its list slot stands
            self._place(key, -(-due_ms // self.tick_ms))
        return True

    def cancel(self, key: K) -> bool:
        # Its list slot stays until its group's time comes round, and is skipped then.
        return self._entries.pop(key, None) is not None

    def next_expiration(self) -> int | None:
        """When the driver must next call `advance` (ms), or None when the wheel is empty. (A bucket that
        holds only moved or cancelled keys may still be named: advancing to it finds nothing.)"""
        heap = self._expirations
        if not self._entries:
            heap.clear()
            self._buckets.clear()
            return None
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
            sub_unit = self.wheel_size ** (level - 1) if level else 0
            for sub, group in bucket.items():
                for key in group:
                    value = self._entries.get(key)
                    if value is None:
                        continue  # cancelled, or fired from another slot
                    due_ms = value & _DUE_MASK
                    due_tick = -(-due_ms // self.tick_ms)
                    if (due_tick // sub_unit != sub) if level else (due_tick != block):
                        continue  # moved: its live slot is in another group
                    if due_tick <= target:
                        del self._entries[key]
                        fired.append((key, due_ms, value >> DUE_BITS))
                    else:
                        self._place(key, due_tick)
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
                    key = group.pop()
                    moved += 1
                    value = self._entries.get(key)
                    if value is not None:
                        due_tick = -(-(value & _DUE_MASK) // self.tick_ms)
                        if due_tick // sub_unit == sub:  # else moved: its live slot is elsewhere
                            self._place(key, due_tick)
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

    def _upcoming(self) -> list[tuple[int, dict[int, list[K]]]]:
        """(lower-level unit, bucket) of each higher-level bucket whose block is its level's next, soonest first."""
        found = []
        for tick, level, block in self._expirations:
            unit = self.wheel_size**level
            bucket = self._buckets.get((level, block))
            if level and bucket and block == self._current // unit + 1:
                found.append((tick, unit // self.wheel_size, bucket))
        found.sort(key=lambda item: item[0])
        return [(sub_unit, bucket) for _, sub_unit, bucket in found]

    def _place(self, key: K, due_tick: int) -> None:
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
            group = bucket[sub] = []
        group.append(key)
