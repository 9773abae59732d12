"""Retry delays: exponential with jitter, capped. Pure; randomness is passed in."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Backoff


def delay_ms(policy: Backoff, failures: int, rand: float) -> int:
    """Delay before the retry that follows the `failures`-th failed attempt.

    Args:
        policy: the job's backoff policy.
        failures: attempts failed so far (1 after the first failure).
        rand: a uniform random number in [0, 1); jitter spreads the delay by ±`policy.jitter`.

    Returns:
        Milliseconds, never negative and never above `policy.max_ms`.
    """
    exponent = max(failures - 1, 0)
    raw = policy.base_ms * policy.factor ** min(exponent, 64)
    nominal = min(float(policy.max_ms), raw)
    spread = nominal * (1.0 + policy.jitter * (2.0 * rand - 1.0))
    return max(0, min(policy.max_ms, round(spread)))
