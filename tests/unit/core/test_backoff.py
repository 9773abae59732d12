"""Retry delays."""

from __future__ import annotations

import pytest

from jetsched.core.backoff import delay_ms
from jetsched.core.models import Backoff


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (10, 60_000), (1000, 60_000)],
)
def test_exponential_and_capped(failures: int, expected: int) -> None:
    """Without jitter: base × factor^(n-1), capped at max_ms, even for absurd n."""
    assert delay_ms(Backoff(base_ms=1000, factor=2, max_ms=60_000, jitter=0), failures, 0.7) == expected


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999])
def test_jitter_spreads_within_bounds(rand: float) -> None:
    """Jitter moves the delay by at most ±jitter × nominal."""
    got = delay_ms(Backoff(base_ms=1000, factor=2, jitter=0.5), 1, rand)
    assert 500 <= got <= 1500
    assert got == round(1000 * (1 + 0.5 * (2 * rand - 1)))


def test_jitter_never_exceeds_cap() -> None:
    """A delay at the cap stays at or under it whatever the jitter."""
    assert delay_ms(Backoff(base_ms=1000, max_ms=1000, jitter=1.0), 5, 0.999) <= 1000


def test_zero_base_is_immediate() -> None:
    """base_ms 0 retries at once."""
    assert delay_ms(Backoff(base_ms=0), 3, 0.9) == 0
