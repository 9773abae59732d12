"""Drives a `TimingWheel` in real time: sleeps until the next non-empty bucket, never polls idly.

The loop wakes at `next_expiration()` or when an entry earlier than that is armed, reads the clock, and
advances the wheel to *now* — not to the time it meant to wake at — because event loops may wake early
(uvloop by up to ~0.5 ms) and a due time is honoured only by checking the clock.

Cascading is spread out: as groups of a higher-level bucket come to fit the lower level, the driver moves
them down in bounded chunks, one chunk per loop turn, instead of moving them all in the one `advance` that
crosses the level boundary (moving ~1M timers at once blocks a CPython loop for ~0.3 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Generic, TypeVar

from .wheel import TimingWheel

if TYPE_CHECKING:
    from collections.abc import Callable

    from jetsched.core.clock import Clock

K = TypeVar("K")

#: Timers moved down a level per loop turn (a few milliseconds of work), so no turn blocks the loop long.
CASCADE_BUDGET = 3000


class WheelDriver(Generic[K]):
    name = "wheel"

    def __init__(
        self, clock: Clock, on_due: Callable[[list[tuple[K, int, int]]], None], tick_ms: int = 1
    ) -> None:
        self.clock = clock
        self.on_due = on_due
        self.wheel: TimingWheel[K] = TimingWheel(tick_ms=tick_ms, start_ms=clock.now_ms())
        self._rearm = asyncio.Event()
        self._sleeping_until = math.inf

    def arm(self, key: K, due_ms: int, data: int = 0) -> None:
        """Schedule `key` (with `data`, see `TimingWheel.add`); an entry already due is handed to `on_due`
        at once."""
        if not self.wheel.add(key, due_ms, data):
            self.on_due([(key, due_ms, data)])
        elif due_ms < self._sleeping_until:
            self._rearm.set()

    def disarm(self, key: K) -> None:
        self.wheel.cancel(key)

    async def run(self) -> None:
        while True:
            now = self.clock.now_ms()
            fired = self.wheel.advance(now)
            if fired:
                self.on_due(fired)
            if self.wheel.cascade(CASCADE_BUDGET):
                await asyncio.sleep(0)  # one bounded chunk per loop turn: due timers and I/O go in between
                continue
            wake_at = self.wheel.next_expiration()
            fits_lower = self.wheel.next_cascade()
            if fits_lower is not None:
                wake_at = fits_lower if wake_at is None else min(wake_at, fits_lower)
            self._sleeping_until = math.inf if wake_at is None else wake_at
            timeout = None if wake_at is None else max(wake_at - self.clock.now_ms(), 0) / 1000
            self._rearm.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rearm.wait(), timeout)
