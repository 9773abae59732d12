"""Injected time. Pure code takes `now_ms` as an argument; services take a `Clock`.

`SystemClock` reads wall time once at start and advances it with `time.monotonic`, so a wall-clock step (NTP)
never makes a timer fire early or twice within a process. Times are epoch milliseconds because records
carry absolute due times that other processes (and hosts) read.

Hosts' clocks disagree, so nothing that decides *when* a job may start reads a host's clock alone:
`ServerClock` reads the NATS servers' time instead — the local clock plus an offset learnt from
timestamps the servers put on what they store and answer — and only ever errs behind it (`docs/
architecture.md`, "Time"). Durations a process measures for itself (a lease's or a session's silence)
keep the local clock: they compare its own readings, which no offset can help or harm.

Waiting is the clock's too (`sleep`): a loop that waits out a backoff, a lease's renewal period or a
sweep interval asks its clock, so a test hands it a `FakeClock` and checks the timing without waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import time
from collections import deque
from typing import Protocol

#: Test hook: run this process as if its host's clock were off by this many milliseconds.
SKEW_ENV = "JETSCHED_CLOCK_SKEW_MS"


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""


class LocalClock(Clock, Protocol):
    """A process's own clock, also read to sub-millisecond precision (durations it measures itself)."""

    def now(self) -> float: ...


class SystemClock:
    """Epoch milliseconds, monotonic within the process."""

    def __init__(self, skew_ms: int | None = None) -> None:
        if skew_ms is None:
            skew_ms = int(os.environ.get(SKEW_ENV) or 0)
        self._offset = time.time() - time.monotonic() + skew_ms / 1000

    def now(self) -> float:
        """Epoch seconds as a float, for sub-millisecond measurements."""
        return time.monotonic() + self._offset

    def now_ms(self) -> int:
        return int((time.monotonic() + self._offset) * 1000)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ServerClock:
    """Epoch milliseconds as the NATS servers' clocks read them: a lower bound, never ahead of them.

    Each observation is a server timestamp known to have been taken no later than a local reading (a
    reply's `ts` read after the reply arrived), so `server − local` at that moment bounds the offset from
    below; the best (largest) bound of the last `WINDOW_MS` is used, which tracks a slowly drifting local
    clock and a stream leader moving to a server whose clock differs. Readings never go backwards.
    Before the first observation it reads the local clock (`synced` is False); services observe once
    before they start acting on time.
    """

    WINDOW_MS = 60_000

    def __init__(self, local: LocalClock) -> None:
        self.local = local
        #: (local ms, offset µs), offsets strictly decreasing: the sliding window's maximum at the front.
        #: Microseconds, because rounding each bound to whole milliseconds would put two processes'
        #: readings up to 2 ms apart (a claim stamped before the due time the timer honoured).
        self._bounds: deque[tuple[int, int]] = deque()
        self._last = 0

    @property
    def synced(self) -> bool:
        return bool(self._bounds)

    def observe(self, server_ns: int, local_s: float) -> None:
        """The servers' clock read `server_ns` no later than this process's clock read `local_s`."""
        offset = server_ns // 1000 - math.ceil(local_s * 1_000_000)
        while self._bounds and self._bounds[-1][1] <= offset:
            self._bounds.pop()
        self._bounds.append((math.ceil(local_s * 1000), offset))

    def _offset_us(self) -> int:
        horizon = self.local.now_ms() - self.WINDOW_MS
        while len(self._bounds) > 1 and self._bounds[0][0] < horizon:
            self._bounds.popleft()
        return self._bounds[0][1] if self._bounds else 0

    def offset_ms(self) -> int:
        """Server time minus local time, at least (0 before the first observation)."""
        return self._offset_us() // 1000

    def now_ms(self) -> int:
        reading = (math.floor(self.local.now() * 1_000_000) + self._offset_us()) // 1000
        self._last = max(self._last, reading)
        return self._last

    async def sleep(self, seconds: float) -> None:
        await self.local.sleep(seconds)


class FakeClock:
    """A clock a test moves (trio's `MockClock`): nothing waits in real time.

    With `autojump` (the default) a `sleep` moves the clock on by its duration at once, as if the wait
    had passed — a backoff loop runs through all its waits in no time, and `slept` records them. Without
    it, sleepers wait until the test calls `advance` past their wake-up time.
    """

    def __init__(self, start_ms: int = 0, autojump: bool = True) -> None:
        self._now_us = start_ms * 1000
        self.autojump = autojump
        #: Every sleep asked for, in seconds, in order.
        self.slept: list[float] = []
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now_us / 1_000_000

    def now_ms(self) -> int:
        return self._now_us // 1000

    def advance(self, seconds: float) -> None:
        """Move the clock on, waking the sleepers due by then."""
        self._now_us += round(seconds * 1_000_000)
        while self._sleepers and self._sleepers[0][0] <= self._now_us:
            _, _, woken = heapq.heappop(self._sleepers)
            if not woken.done():
                woken.set_result(None)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.autojump or seconds <= 0:
            self.advance(max(seconds, 0))
            await asyncio.sleep(0)  # still a turn of the loop, as a real sleep is
            return
        woken = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_us + round(seconds * 1_000_000), next(self._order), woken))
        await woken
