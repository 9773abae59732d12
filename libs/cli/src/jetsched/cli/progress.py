"""A progress line for long commands: on stderr, redrawn in place, and only when stderr is a terminal.

What scripts read never carries it: stdout (and so `--json`) gets only the result, and stderr that goes
to a file or a pipe gets no progress at all, rather than a log full of carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

#: Redraws at most this often: a bulk action over thousands of jobs should not spend its time drawing.
INTERVAL_S = 0.1
#: Back to the line's start and erase it (ANSI, understood by every terminal people use).
ERASE = "\r\x1b[K"


class Progress:
    """`update(text)` as work goes on; `clear()` before printing other output to the terminal."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.enabled = self.stream.isatty()
        self._shown = False
        self._drawn_at = float("-inf")

    def update(self, text: str, final: bool = False) -> None:
        """Show `text`, unless the last redraw was under `INTERVAL_S` ago (a `final` one always shows)."""
        now = self.clock()
        if not self.enabled or (not final and now - self._drawn_at < INTERVAL_S):
            return
        self.stream.write(ERASE + text)
        self.stream.flush()
        self._shown, self._drawn_at = True, now

    def clear(self) -> None:
        if self._shown:
            self.stream.write(ERASE)
            self.stream.flush()
            self._shown = False
