"""Injected time. Pure code takes `now_ms` as an argument; services take a `Clock`.

`SystemClock` reads wall time once at start and advances it with `time.monotonic`, so a wall-clock step (NTP)
never makes a timer fire early or twice within a process. Times are epoch milliseconds because records
carry absolute due times that other processes (and hosts) read.

Hosts' clocks disagree, so nothing that decides *when* a job may start reads a host's clock alone:
`ServerClock` reads the NATS servers' time instead — the local clock plus an offset learnt from
timestamps the servers put on what they store and answer — and only ever errs behind it (`docs/
architecture.md`, "Time"). Durations a process measures for itself (a lease's or a session's silence)
keep the local clock: they compare its own readings, which no offset can help or harm.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from typing import Protocol

#: Test hook: run this process as if its host's clock were off by this many milliseconds.
SKEW_ENV = "JETSCHED_CLOCK_SKEW_MS"


class Clock(Protocol):
    def now_ms(self) -> int: ...


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

    def __init__(self, local: SystemClock) -> None:
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
