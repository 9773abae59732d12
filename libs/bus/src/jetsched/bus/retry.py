"""Retrying an operation that can fail for a while (storage electing a leader, a service restarting).

One helper for every such loop: which exceptions are worth another try, how the waits grow
(exponentially from `Backoff.first_s`, doubling up to `max_s`), and when to give up — never (a service
that cannot start without the storage keeps trying: its supervisor would only start it again), or once
the next wait would end past a deadline (a client's call, which must answer its caller). Waits are on
an injected clock (`jetsched.core.clock`), so tests of the timing do not sleep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from jetsched.core.clock import SystemClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from jetsched.core.clock import Clock

T = TypeVar("T")

_SYSTEM = SystemClock()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between tries: `first_s`, then doubling, capped at `max_s`."""

    first_s: float = 0.05
    max_s: float = 1.0

    def after(self, wait_s: float) -> float:
        return min(wait_s * 2, self.max_s)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    backoff: Backoff = Backoff(),
    within_s: float | None = None,
    unless: Callable[[BaseException], bool] | None = None,
    on_retry: Callable[[BaseException, float], None] | None = None,
    clock: Clock = _SYSTEM,
) -> T:
    """`await attempt()` until it returns, waiting `backoff` between tries.

    Args:
        attempt: the operation; called again after each retried failure.
        on: the exceptions worth another try; anything else is raised at once.
        backoff: the waits between tries.
        within_s: give up (re-raise the last failure) once the next wait would end more than this long
            after the first try began; None: never give up.
        unless: a failure it returns True for is raised at once, though it is one of `on`.
        on_retry: told of each retried failure and the wait before the next try (to log it).
        clock: what the waits and the deadline are measured on.

    Returns:
        What `attempt` returned.
    """
    deadline_ms = None if within_s is None else clock.now_ms() + within_s * 1000
    wait_s = backoff.first_s
    while True:
        try:
            return await attempt()
        except on as exc:
            if unless is not None and unless(exc):
                raise
            if deadline_ms is not None and clock.now_ms() + wait_s * 1000 > deadline_ms:
                raise
            if on_retry is not None:
                on_retry(exc, wait_s)
        await clock.sleep(wait_s)
        wait_s = backoff.after(wait_s)
