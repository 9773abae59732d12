"""ULIDs."""

from __future__ import annotations

from jetsched.core.ids import ULID_RE, UlidFactory, timestamp_ms


def test_monotonic_within_a_millisecond() -> None:
    """Ids made in the same millisecond still sort in creation order."""
    factory = UlidFactory()
    ids = [factory.new(1_700_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_time_sortable_and_decodable() -> None:
    """Later milliseconds sort later; the timestamp decodes back; the alphabet is Crockford's."""
    factory = UlidFactory()
    a, b = factory.new(1_700_000_000_000), factory.new(1_700_000_000_001)
    assert a < b
    assert timestamp_ms(a) == 1_700_000_000_000
    assert ULID_RE.match(a)


def test_clock_going_back_stays_monotonic() -> None:
    """A clock stepping backwards never makes a smaller id."""
    factory = UlidFactory()
    a = factory.new(2_000)
    assert factory.new(1_000) > a
