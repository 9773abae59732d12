"""Injected time. Pure code takes `now_ms` as an argument; services take a `Clock`.

`SystemClock` reads wall time once at start and advances it with `time.monotonic`, so a wall-clock step (NTP)
never makes a timer fire early or twice within a process. Times are epoch milliseconds because records
carry absolute due times that other processes (and hosts) read.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def sleep_until(self, deadline_ms: int) -> None: ...


class SystemClock:
    """Epoch milliseconds, monotonic within the process."""

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def now(self) -> float:
        """Epoch seconds as a float, for sub-millisecond measurements."""
        return time.monotonic() + self._offset

    def now_ms(self) -> int:
        return int((time.monotonic() + self._offset) * 1000)

    async def sleep_until(self, deadline_ms: int) -> None:
        # Event loops may wake a little early (uvloop up to ~0.5 ms): callers re-check now_ms().
        delay = deadline_ms / 1000 - (time.monotonic() + self._offset)
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """A clock tests move by hand; `sleep_until` returns once `advance` passes the deadline."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._changed = asyncio.Event()

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        self._now += ms
        self._changed.set()

    async def sleep_until(self, deadline_ms: int) -> None:
        while self._now < deadline_ms:
            self._changed.clear()
            await self._changed.wait()
