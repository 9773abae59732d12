"""Crash points: every named point is placed exactly once in the code, and nothing else is named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jetsched.bus import crashpoints

ROOT = Path(__file__).resolve().parents[2]


def placed() -> list[str]:
    found = []
    for path in [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]:
        found += re.findall(r'crashpoint\("([a-z_.]+)"\)', path.read_text())
    return found


def test_each_point_placed_once() -> None:
    """The code and the list of points agree one to one."""
    names = placed()
    assert sorted(names) == sorted(crashpoints.POINTS)


def test_unknown_point_is_refused() -> None:
    """A typo in JETSCHED_CRASH_AT fails loudly instead of silently never crashing."""
    with pytest.raises(ValueError, match="no crash point"):
        crashpoints._parse("dispatcher.claim.after_cass")
    assert crashpoints._parse("timer.due.after_cas:3") == ("timer.due.after_cas", 3)
    assert crashpoints._parse(None) is None
