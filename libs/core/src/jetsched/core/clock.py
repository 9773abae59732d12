"""Injected time. Pure code takes `now_ms` as an argument; services take a `Clock`.

`SystemClock` reads wall time once at start and advances it with `time.monotonic`, so a wall-clock step (NTP)
never makes a timer fire early or twice within a process. Times are epoch milliseconds because records
carry absolute due times that other processes (and hosts) read.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Epoch milliseconds, monotonic within the process."""

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()

    def now(self) -> float:
        """Epoch seconds as a float, for sub-millisecond measurements."""
        return time.monotonic() + self._offset

    def now_ms(self) -> int:
        return int((time.monotonic() + self._offset) * 1000)
