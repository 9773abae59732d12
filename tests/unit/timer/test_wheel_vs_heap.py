"""Differential test: the wheel against a heap over random schedules, cancels and clock jumps."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from jetsched.timer.wheel import TimingWheel

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 30), st.integers(0, 5000)),
        st.tuples(st.just("cancel"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("advance"), st.just(0), st.integers(0, 800)),
        st.tuples(st.just("cascade"), st.integers(1, 20), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, tick=st.sampled_from([1, 3, 10]), size=st.sampled_from([2, 4, 16]), start=st.integers(0, 100))
def test_same_fires_never_early_at_most_one_tick_late(
    ops: list[tuple[str, int, int]], tick: int, size: int, start: int
) -> None:
    """Whatever happens (early cascades included), the wheel fires what a heap would: never early, ≤ 1 tick late."""
    wheel: TimingWheel[int] = TimingWheel(tick_ms=tick, wheel_size=size, start_ms=start)
    live: dict[int, int] = {}
    heap: list[tuple[int, int]] = []
    now = start
    for op, key, value in ops:
        if op == "add":
            due = now + value
            if wheel.add(key, due, data=key * 1_000_003):
                live[key] = due
                heapq.heappush(heap, (due, key))
            else:
                assert due <= now
                live.pop(key, None)
        elif op == "cascade":
            wheel.cascade(budget=key)
        elif op == "cancel":
            assert wheel.cancel(key) == (live.pop(key, None) is not None)
        else:
            now += value
            fired = wheel.advance(now)
            expected = {}
            while heap and heap[0][0] <= now:
                due, k = heapq.heappop(heap)
                if live.get(k) == due:
                    expected[k] = due
            for k, due, data in fired:
                assert data == k * 1_000_003
                assert due <= now, "fired early"
                assert live.pop(k) == due
            late = {k: d for k, d in expected.items() if k not in {f[0] for f in fired}}
            for k, due in late.items():
                # Due within the last tick: allowed to wait for the next tick boundary.
                assert now // tick < -(-due // tick), "more than one tick late"
                heapq.heappush(heap, (due, k))
        assert len(wheel) == len(live)
