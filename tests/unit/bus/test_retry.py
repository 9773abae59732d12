"""Retrying an operation that fails for a while (`bus.retry`), on a fake clock: nothing sleeps."""

from __future__ import annotations

import pytest

from jetsched.bus.retry import Backoff, retry
from jetsched.core.clock import FakeClock


class Flaky:
    """Fails with the given exceptions, one per call, then answers 'ok'."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class TestRetry:
    async def test_waits_grow_to_the_cap(self) -> None:
        """Waits double from the first up to the cap, and the answer comes back."""
        clock = FakeClock()
        flaky = Flaky(*[TimeoutError()] * 6)
        assert await retry(flaky, backoff=Backoff(0.1, 1.0), clock=clock) == "ok"
        assert clock.slept == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        assert flaky.calls == 7

    async def test_other_exceptions_pass_at_once(self) -> None:
        """An exception not worth another try is raised without a wait."""
        clock = FakeClock()
        with pytest.raises(KeyError):
            await retry(Flaky(KeyError("bug")), on=TimeoutError, clock=clock)
        assert clock.slept == []

    async def test_unless_raises_a_retryable_kind_at_once(self) -> None:
        """A failure `unless` picks out is raised, though its type is retried."""
        clock = FakeClock()
        with pytest.raises(ValueError, match="final"):
            await retry(
                Flaky(ValueError("passing"), ValueError("final")),
                unless=lambda e: "final" in str(e),
                clock=clock,
            )
        assert clock.slept == [0.05]

    async def test_gives_up_before_a_wait_would_pass_the_deadline(self) -> None:
        """With `within_s`, the last failure is raised once the next wait would end past the deadline."""
        clock = FakeClock(start_ms=5_000)
        flaky = Flaky(*[TimeoutError(str(n)) for n in range(10)])
        with pytest.raises(TimeoutError, match="3"):
            await retry(flaky, backoff=Backoff(0.1, 1.0), within_s=1.0, clock=clock)
        assert clock.slept == [0.1, 0.2, 0.4]  # a 0.8 s wait would end at 1.5 s
        assert clock.now_ms() == 5_700

    async def test_on_retry_hears_every_retried_failure(self) -> None:
        """Each retried failure is reported with the wait that follows it."""
        heard: list[tuple[str, float]] = []
        flaky = Flaky(TimeoutError("a"), TimeoutError("b"))
        await retry(flaky, on_retry=lambda e, wait: heard.append((str(e), wait)), clock=FakeClock())
        assert heard == [("a", 0.05), ("b", 0.1)]
