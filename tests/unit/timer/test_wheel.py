"""The hierarchical timing wheel, with tiny wheels (Kafka's cases)."""

from __future__ import annotations

import pytest

from jetsched.timer.wheel import TimingWheel


def wheel(tick: int = 1, size: int = 4, start: int = 0) -> TimingWheel[str]:
    return TimingWheel(tick_ms=tick, wheel_size=size, start_ms=start)


class TestAdd:
    def test_already_due_is_refused(self) -> None:
        """An entry due now or in the past is not stored (the caller fires it)."""
        w = wheel(start=100)
        assert not w.add("a", 100)
        assert not w.add("b", 50)
        assert len(w) == 0

    def test_current_tick_is_stored_not_fired(self) -> None:
        """An entry due later within the current tick waits: never early."""
        w = wheel(tick=10, start=100)
        assert w.add("a", 105)
        assert w.advance(104) == []
        assert w.advance(110) == [("a", 105, 0)]

    def test_re_add_moves_entry(self) -> None:
        """Adding a key again replaces its due time."""
        w = wheel()
        w.add("a", 3)
        w.add("a", 9)
        assert len(w) == 1
        assert w.advance(5) == []
        assert w.advance(9) == [("a", 9, 0)]

    def test_invalid_geometry(self) -> None:
        """A tick under 1 ms or a wheel of one bucket is refused."""
        with pytest.raises(ValueError, match="tick_ms"):
            TimingWheel(tick_ms=0)
        with pytest.raises(ValueError, match="wheel_size"):
            TimingWheel(wheel_size=1)


class TestAdvance:
    def test_fires_at_due_time_not_before(self) -> None:
        """An entry fires on the first advance at or past its due time."""
        w = wheel()
        w.add("a", 3)
        assert w.advance(2) == []
        assert w.advance(3) == [("a", 3, 0)]
        assert len(w) == 0

    def test_overflow_levels_made_and_cascaded(self) -> None:
        """Far entries go to higher levels and cascade down on the way (the docstring's example)."""
        w = wheel()
        w.add("near", 3)
        w.add("mid", 9)
        w.add("far", 70)
        assert w.next_expiration() == 3
        assert w.advance(8) == [("near", 3, 0)]
        assert w.advance(9) == [("mid", 9, 0)]
        assert w.advance(69) == []
        assert w.advance(70) == [("far", 70, 0)]

    def test_jump_far_ahead_fires_everything_due(self) -> None:
        """One advance across many levels returns every due entry and keeps the rest."""
        w = wheel()
        for due in (1, 5, 17, 65, 300, 1000):
            w.add(f"t{due}", due)
        fired = w.advance(299)
        assert sorted(d for _, d, _ in fired) == [1, 5, 17, 65]
        assert len(w) == 2
        assert w.advance(1000) == [("t300", 300, 0), ("t1000", 1000, 0)]

    def test_advance_backwards_is_noop(self) -> None:
        """Time never goes back."""
        w = wheel(start=50)
        w.add("a", 60)
        assert w.advance(40) == []
        assert w.now_ms == 50

    def test_rounding_is_up(self) -> None:
        """With a 10 ms tick, an entry due at 101 fires at 110, not at 100."""
        w = wheel(tick=10)
        w.add("a", 101)
        assert w.advance(100) == []
        assert w.advance(109) == []
        assert w.advance(110) == [("a", 101, 0)]


class TestCancel:
    def test_cancel_removes(self) -> None:
        """A cancelled entry never fires and frees its bucket."""
        w = wheel()
        w.add("a", 9)
        assert w.cancel("a")
        assert not w.cancel("a")
        assert w.next_expiration() is None
        assert w.advance(100) == []

    def test_cancel_one_of_bucket(self) -> None:
        """Cancelling one entry leaves its bucket-mates."""
        w = wheel()
        w.add("a", 9)
        w.add("b", 10)
        w.cancel("a")
        assert "b" in w
        assert "a" not in w
        assert w.advance(10) == [("b", 10, 0)]


class TestNextExpiration:
    def test_empty(self) -> None:
        """An empty wheel has nothing to wait for."""
        assert wheel().next_expiration() is None

    def test_never_after_the_earliest_due(self) -> None:
        """The driver is woken no later than the earliest entry's due time."""
        w = wheel()
        w.add("a", 70)
        w.add("b", 33)
        assert w.next_expiration() is not None
        assert w.next_expiration() <= 33  # type: ignore[operator]


class TestCascade:
    def test_big_bucket_moves_down_in_chunks_before_its_boundary(self) -> None:
        """Groups of the next higher-level bucket move down, a bounded chunk at a time, once they fit."""
        w = wheel(size=16)
        for n in range(1000):
            w.add(f"t{n}", 300 + n % 200)
        assert w.cascade(budget=100) == 0
        assert w.next_cascade() is not None
        w.advance(250)
        assert w.cascade(budget=100) == 100
        while w.cascade(budget=100):
            pass
        assert w.cascade(budget=100) == 0
        fired = w.advance(499)
        assert len(fired) == 1000
        assert all(due <= 499 for _, due, _ in fired)

    def test_nothing_to_cascade_far_ahead(self) -> None:
        """Buckets beyond the next block of their level are left alone."""
        w = wheel(size=4)
        w.add("far", 10_000)
        assert w.cascade(budget=10) == 0


class TestWheelData:
    def test_data_comes_back_with_its_entry(self) -> None:
        """The int given to `add` comes back from `advance`, through cascades and moves."""
        w = wheel(size=4)
        w.add("near", 3, data=7)
        w.add("far", 70, data=2**200 + 5)
        w.add("moved", 9, data=1)
        w.add("moved", 10, data=11)
        assert w.advance(9) == [("near", 3, 7)]
        assert w.advance(70) == [("moved", 10, 11), ("far", 70, 2**200 + 5)]

    def test_refuses_negative_data_and_huge_due_times(self) -> None:
        """Data is an int ≥ 0; a due time must fit its 64 bits."""
        w = wheel()
        with pytest.raises(ValueError, match="data"):
            w.add("a", 5, data=-1)
        with pytest.raises(ValueError, match="due_ms"):
            w.add("a", 2**64)

    def test_moved_away_and_back_fires_once(self) -> None:
        """An entry moved out of its group and back (two slots in one list) fires once, at its last time."""
        w = wheel(size=4)
        w.add("a", 70, data=1)
        w.add("a", 200, data=2)
        w.add("a", 71, data=3)
        w.add("b", 72)
        w.cancel("b")
        assert w.advance(300) == [("a", 71, 3)]
        assert len(w) == 0
        assert w.next_expiration() is None
