"""Evaluation cost follows the instants asked for, not the width of the window searched for them."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from jetsched.core import cron
from jetsched.core.cron import DstFold, DstGap, TooManySteps, cron_fires, to_local
from jetsched.core.schedules import HORIZON_MS

#: Far fewer croniter steps than any of these took before (every match of a day to a year).
STEPS = 50


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def fires(expr: str, tz: str, after: str, limit: int) -> list[int]:
    return cron_fires(expr, tz, ms(after), ms(after) + HORIZON_MS, DstGap.SHIFT, DstFold.FIRST, limit)


@pytest.mark.parametrize(
    ("expr", "tz", "after", "first"),
    [
        # Every second of 29 February: the next leap day.
        ("* * * 29 2 *", "UTC", "2026-03-01T00:00:00+00:00", "2028-02-29T00:00:00+00:00"),
        # Every second of September.
        ("* * * * 9 *", "UTC", "2026-10-01T00:00:00+00:00", "2027-09-01T00:00:00+00:00"),
        # Every 5 s on weekdays, from a Saturday in Berlin.
        ("*/5 * * * * 1-5", "Europe/Berlin", "2026-05-02T10:00:00+02:00", "2026-05-04T00:00:00+02:00"),
        # Every second of the 1st of the month.
        ("* * * 1 * *", "UTC", "2026-01-02T00:00:00+00:00", "2026-02-01T00:00:00+00:00"),
    ],
)
def test_dense_sparse_expressions_are_cheap(
    monkeypatch: pytest.MonkeyPatch, expr: str, tz: str, after: str, first: str
) -> None:
    """Next fire and a 5-fire preview within a few dozen croniter steps, with the right instants."""
    monkeypatch.setattr(cron, "MAX_STEPS", STEPS)
    step = 5000 if expr.startswith("*/5") else 1000
    assert [to_local(t, tz) for t in fires(expr, tz, after, 1)] == [first]
    preview = fires(expr, tz, after, 5)
    assert preview == [ms(first) + k * step for k in range(5)]


def test_cap_stops_an_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_STEPS an evaluation gives up with what it had found, whatever the expression."""
    monkeypatch.setattr(cron, "MAX_STEPS", 100)
    with pytest.raises(TooManySteps) as info:
        fires("* * * * * *", "UTC", "2026-01-01T00:00:00+00:00", 1000)
    assert all(a < b for a, b in itertools.pairwise(info.value.found))


def test_every_second_through_daylight_saving_stays_within_the_cap() -> None:
    """The costliest ordinary case, every second across Berlin's repeated hour (both passes), is found
    within the cap: a wall-clock second at a time, each instant once."""
    after = "2026-10-25T00:30:00+00:00"
    found = cron_fires(
        "* * * * * *", "Europe/Berlin", ms(after), ms(after) + HORIZON_MS, DstGap.SHIFT, DstFold.BOTH, 5
    )
    assert found == [ms(after) + k * 1000 for k in range(1, 6)]
