"""How long the reaper gathers a workflow's outcomes before advancing it again."""

from __future__ import annotations

from jetsched.reaper.advance import MAX_COALESCE_MS, coalesce_ms


def test_small_workflows_are_advanced_at_once() -> None:
    """A chain's record (a kilobyte or two) is advanced as soon as its outcome arrives."""
    assert coalesce_ms(0) == 0
    assert coalesce_ms(2_000) == 0


def test_big_workflows_gather_outcomes_for_a_bounded_while() -> None:
    """A 1,000-step record (~90 KB) waits ~90 ms between advances; nothing waits more than the cap."""
    assert 60 <= coalesce_ms(90_000) <= MAX_COALESCE_MS
    assert coalesce_ms(10_000_000) == MAX_COALESCE_MS
