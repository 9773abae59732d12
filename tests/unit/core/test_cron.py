"""Fire times across daylight saving, leap days and month ends, in several zones."""

from __future__ import annotations

from datetime import datetime

import pytest

from jetsched.core.cron import DstFold, DstGap, check_cron, cron_fires, interval_fires, to_local, to_utc, zone


def ms(text: str, tz: str = "UTC") -> int:
    """An RFC 3339 time; one without an offset is read in `tz`."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    return int(moment.timestamp() * 1000)


def local(
    expr: str,
    tz: str,
    after: str,
    until: str,
    gap: DstGap = DstGap.SHIFT,
    fold: DstFold = DstFold.FIRST,
    limit: int = 100,
) -> list[str]:
    return [to_local(t, tz) for t in cron_fires(expr, tz, ms(after, tz), ms(until, tz), gap, fold, limit)]


@pytest.mark.parametrize(
    ("tz", "day", "gap", "expected"),
    [
        # Spring forward: 02:30 does not exist that night.
        ("Europe/Berlin", "2026-03-29", DstGap.SHIFT, ["2026-03-29T03:30:00+02:00"]),
        ("Europe/Berlin", "2026-03-29", DstGap.SKIP, []),
        ("America/New_York", "2026-03-08", DstGap.SHIFT, ["2026-03-08T03:30:00-04:00"]),
        ("America/New_York", "2026-03-08", DstGap.SKIP, []),
        # Lord Howe springs forward by 30 minutes at 02:00: 02:15 does not exist; shifted by the gap.
        ("Australia/Lord_Howe", "2026-10-04", DstGap.SHIFT, ["2026-10-04T02:45:00+11:00"]),
        ("Australia/Lord_Howe", "2026-10-04", DstGap.SKIP, []),
    ],
)
def test_spring_forward_gap(tz: str, day: str, gap: DstGap, expected: list[str]) -> None:
    """A wall-clock time that does not exist fires shifted by the gap, or not at all."""
    minute = "15" if tz == "Australia/Lord_Howe" else "30"
    fired = local(f"{minute} 2 * * *", tz, f"{day}T00:00:00", f"{day}T23:59:00", gap=gap)
    assert [t for t in fired if t.startswith(day)] == expected


@pytest.mark.parametrize(
    ("tz", "day", "minute", "fold", "expected"),
    [
        ("Europe/Berlin", "2026-10-25", "30 2", DstFold.FIRST, ["2026-10-25T02:30:00+02:00"]),
        ("Europe/Berlin", "2026-10-25", "30 2", DstFold.SECOND, ["2026-10-25T02:30:00+01:00"]),
        (
            "Europe/Berlin",
            "2026-10-25",
            "30 2",
            DstFold.BOTH,
            ["2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"],
        ),
        ("America/New_York", "2026-11-01", "30 1", DstFold.FIRST, ["2026-11-01T01:30:00-04:00"]),
        ("America/New_York", "2026-11-01", "30 1", DstFold.SECOND, ["2026-11-01T01:30:00-05:00"]),
        # Lord Howe falls back 30 minutes at 02:00: 01:45 happens twice.
        ("Australia/Lord_Howe", "2026-04-05", "45 1", DstFold.FIRST, ["2026-04-05T01:45:00+11:00"]),
        ("Australia/Lord_Howe", "2026-04-05", "45 1", DstFold.SECOND, ["2026-04-05T01:45:00+10:30"]),
    ],
)
def test_fall_back_fold(tz: str, day: str, minute: str, fold: DstFold, expected: list[str]) -> None:
    """A wall-clock time that happens twice fires once (first or second), twice only when asked."""
    fired = local(f"{minute} * * *", tz, f"{day}T00:00:00", f"{day}T23:59:00", fold=fold)
    assert [t for t in fired if t.startswith(day)] == expected


def test_frequent_schedule_through_fall_back() -> None:
    """Every 15 minutes through Berlin's repeated hour, first occurrence: each wall-clock time once."""
    fired = local("*/15 * * * *", "Europe/Berlin", "2026-10-25T01:50:00+02:00", "2026-10-25T03:20:00+01:00")
    assert fired == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:15:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:45:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:15:00+01:00",
    ]


def test_daily_time_is_wall_clock_across_transitions() -> None:
    """A 09:00 schedule stays at 09:00 local on both sides of a transition (its UTC time moves)."""
    fired = cron_fires(
        "0 9 * * *",
        "Europe/Berlin",
        ms("2026-03-28T00:00:00Z"),
        ms("2026-03-30T23:00:00Z"),
        DstGap.SHIFT,
        DstFold.FIRST,
        10,
    )
    assert [to_utc(t) for t in fired] == [
        "2026-03-28T08:00:00Z",
        "2026-03-29T07:00:00Z",
        "2026-03-30T07:00:00Z",
    ]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("0 0 29 2 *", "2025-01-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        ("0 12 31 * *", "2026-01-31T12:00:00Z", ["2026-03-31T12:00:00Z", "2026-05-31T12:00:00Z"]),
        ("0 0 L * *", "2026-01-15T00:00:00Z", ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z"]),
        ("0 0 L 2 *", "2027-03-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"]),
        ("30 15 10 * * *", "2026-01-01T00:00:00Z", ["2026-01-01T10:15:30Z", "2026-01-02T10:15:30Z"]),
    ],
)
def test_calendar_edges(expr: str, after: str, expected: list[str]) -> None:
    """Leap days, month ends (31st, last day `L`) and the 6-field (seconds first) form."""
    fired = cron_fires(expr, "UTC", ms(after), ms("2040-01-01T00:00:00Z"), DstGap.SHIFT, DstFold.FIRST, 2)
    assert [to_utc(t) for t in fired] == expected


def test_impossible_date_never_fires() -> None:
    """30 February never comes: no fire, no hang."""
    assert (
        cron_fires("0 0 30 2 *", "UTC", 0, ms("2040-01-01T00:00:00Z"), DstGap.SHIFT, DstFold.FIRST, 1) == []
    )


def test_interval_fires() -> None:
    """Fixed intervals count from the anchor in absolute time."""
    assert interval_fires(1000, 0, 2500, 6000, 10) == [3000, 4000, 5000, 6000]
    assert interval_fires(1000, 0, 0, 10_000, 2) == [1000, 2000]


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "a b c d e", "* * * * * * *", ""])
def test_bad_cron_refused(expr: str) -> None:
    """Malformed expressions are rejected with a message."""
    with pytest.raises(ValueError, match="cron"):
        check_cron(expr)
