"""The servers' time as a process learns it (`ServerClock`), and the stamps it learns from."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jetsched.bus.server_time import parse_stamp
from jetsched.core.clock import FakeClock, ServerClock, SystemClock


class FakeLocal(SystemClock):
    """A local clock the test moves by hand (epoch seconds)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def now_ms(self) -> int:
        return int(self.at * 1000)


class TestServerClock:
    def test_reads_the_local_clock_until_it_has_observed_the_servers(self) -> None:
        clock = ServerClock(FakeLocal(100.0))
        assert not clock.synced
        assert clock.now_ms() == 100_000

    def test_a_host_clock_30s_ahead_reads_the_servers_time(self) -> None:
        """The host reads 130 s when the servers read 100 s: services act on 100 s, not 130 s."""
        local = FakeLocal(130.0)
        clock = ServerClock(local)
        clock.observe(server_ns=99_999_000_000, local_s=130.0)  # the reply took 1 ms to arrive
        assert clock.synced
        local.at = 131.0
        assert clock.now_ms() == 100_999

    def test_a_host_clock_30s_behind_reads_the_servers_time(self) -> None:
        local = FakeLocal(70.0)
        clock = ServerClock(local)
        clock.observe(server_ns=100_000_000_000, local_s=70.0)
        assert clock.now_ms() == 100_000

    def test_the_best_bound_wins_and_a_slow_reply_does_not_drag_it_back(self) -> None:
        """A reply that took long makes a worse (lower) bound; the better one stays."""
        local = FakeLocal(50.0)
        clock = ServerClock(local)
        clock.observe(100_000_000_000, 50.0)  # offset +50 000 ms
        clock.observe(100_500_000_000, 50.9)  # 400 ms in flight: offset +49 600
        assert clock.offset_ms() == 50_000

    def test_an_old_bound_leaves_the_window(self) -> None:
        """A bound older than the window gives way to newer ones (a drifting host, a new stream leader)."""
        local = FakeLocal(0.0)
        clock = ServerClock(local)
        clock.observe(10_000_000_000, 0.0)  # offset +10 000
        local.at = 30.0
        clock.observe(39_000_000_000, 30.0)  # offset +9 000 (the new leader's clock is 1 s behind)
        assert clock.offset_ms() == 10_000
        local.at = 61.0
        assert clock.offset_ms() == 9_000

    def test_readings_never_go_backwards(self) -> None:
        local = FakeLocal(0.0)
        clock = ServerClock(local)
        clock.observe(10_000_000_000, 0.0)
        local.at = 30.0
        clock.observe(39_000_000_000, 30.0)
        local.at = 60.5
        before = clock.now_ms()
        local.at = 61.0  # the +10 s bound leaves the window: the offset drops by a second
        assert clock.now_ms() >= before

    @given(
        skew_ms=st.integers(-60_000, 60_000),
        flights=st.lists(st.integers(0, 500), min_size=1, max_size=20),
    )
    def test_never_ahead_of_the_servers(self, skew_ms: int, flights: list[int]) -> None:
        """Whatever the host's skew and however long replies take, the reading is never ahead of the
        servers' clock, and behind it by no more than the fastest reply's flight so far."""
        true_ms = 1_000_000
        local = FakeLocal((true_ms + skew_ms) / 1000)
        clock = ServerClock(local)
        for n, flight in enumerate(flights):
            stamped = true_ms
            true_ms += flight
            local.at = (true_ms + skew_ms) / 1000
            clock.observe(stamped * 1_000_000, local.now())
            true_ms += 7
            local.at = (true_ms + skew_ms) / 1000
            # 2 ms of rounding: a bound is rounded down, a local reading to whole milliseconds
            assert true_ms - min(flights[: n + 1]) - 2 <= clock.now_ms() <= true_ms


class TestStamps:
    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("2026-11-29T08:51:16.420695106Z", 1_795_942_276_420_695_106),
            ("2026-11-29T08:51:16Z", 1_795_942_276_000_000_000),
            ("2026-11-29T09:51:16.5+01:00", 1_795_942_276_500_000_000),
        ],
    )
    def test_nanoseconds_survive(self, text: str, ns: int) -> None:
        assert parse_stamp(text) == ns

    @pytest.mark.parametrize(
        "text", ["", "yesterday", "2026-11-29 08:51:16Z", "2026-11-29T08:51:16.1234567890Z"]
    )
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match="not an RFC 3339 time"):
            parse_stamp(text)


class TestFakeClock:
    async def test_autojump_sleep_moves_time_on_at_once(self) -> None:
        """A sleep on an autojumping clock passes at once, moving the clock by its duration."""
        clock = FakeClock(start_ms=1_000)
        await clock.sleep(0.25)
        await clock.sleep(1.5)
        assert (clock.now_ms(), clock.slept) == (2_750, [0.25, 1.5])

    async def test_sleepers_wake_when_advanced_past_their_time(self) -> None:
        """Without autojump, sleepers wait for the test to advance the clock, and wake in order."""
        clock = FakeClock(autojump=False)
        woke: list[str] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append(name)

        tasks = [asyncio.create_task(sleeper("late", 2.0)), asyncio.create_task(sleeper("early", 1.0))]
        await asyncio.sleep(0)
        clock.advance(0.999)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(0.001)
        await asyncio.sleep(0)
        assert woke == ["early"]
        clock.advance(5)
        await asyncio.gather(*tasks)
        assert woke == ["early", "late"]

    async def test_a_zero_sleep_never_waits(self) -> None:
        """A sleep of no time returns even on a clock nobody advances."""
        clock = FakeClock(autojump=False)
        await asyncio.wait_for(clock.sleep(0), timeout=1)
