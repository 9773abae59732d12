"""The CLI's progress line: only on a terminal, redrawn in place, never too often."""

from __future__ import annotations

import io

from jetsched.cli.progress import ERASE, Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_unless_a_terminal() -> None:
    """Stderr on a pipe or a file gets no progress at all."""
    stream = io.StringIO()
    progress = Progress(stream)
    progress.update("listed 250 jobs…", final=True)
    progress.clear()
    assert stream.getvalue() == ""


def test_redrawn_in_place_and_throttled() -> None:
    """Each redraw erases the line first; updates within the interval are skipped unless final; clear
    erases what is shown, once."""
    stream, now = Terminal(), [100.0]
    progress = Progress(stream, clock=lambda: now[0])
    for done, at in ((8, 100.0), (16, 100.05), (24, 100.2), (32, 100.25)):
        now[0] = at
        progress.update(f"retried {done}/40…")
    progress.update("retried 40/40…", final=True)
    progress.clear()
    progress.clear()
    shown = ("retried 8/40…", "retried 24/40…", "retried 40/40…", "")
    assert stream.getvalue() == "".join(ERASE + text for text in shown)
