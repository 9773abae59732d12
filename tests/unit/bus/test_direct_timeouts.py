"""Request timeouts (`direct.Connection`) measured on the connection's clock: a fake one, nothing sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jetsched.bus.direct import SWEEP_S, Connection, DirectHandler, DirectSubscription
from jetsched.core.clock import FakeClock


class Unanswered(Connection):
    """A connection whose requests go out to nobody who answers (no server: a fake transport)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.sent: list[str] = []

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, Any] | None = None
    ) -> None:
        self.sent.append(subject)

    async def subscribe_direct(
        self, subject: str, handler: DirectHandler, queue: str = ""
    ) -> DirectSubscription:
        return DirectSubscription(handler)


async def run_for(clock: FakeClock, seconds: float) -> None:
    """Move the clock on a sweep at a time, letting the sweeper run after each step."""
    for _ in range(round(seconds / SWEEP_S)):
        clock.advance(SWEEP_S)
        for _ in range(3):
            await asyncio.sleep(0)


class TestRequestTimeout:
    async def test_times_out_on_its_clock(self) -> None:
        """A request nobody answers fails with `TimeoutError` once its timeout has passed on the clock,
        and not before."""
        clock = FakeClock(start_ms=1_000_000, autojump=False)
        nc = Unanswered(clock)
        request = asyncio.create_task(nc.request_raw("nobody.home", b"{}", timeout=2.0))
        await run_for(clock, 1.9)
        assert nc.sent == ["nobody.home"]
        assert not request.done()
        await run_for(clock, 0.2)
        with pytest.raises(TimeoutError):
            await request
        assert nc._sweeper is not None
        nc._sweeper.cancel()

    async def test_each_request_has_its_own_deadline(self) -> None:
        """A later request with a shorter timeout fails first; the earlier one keeps waiting."""
        clock = FakeClock(autojump=False)
        nc = Unanswered(clock)
        slow = asyncio.create_task(nc.request_raw("a", b"", timeout=5.0))
        await run_for(clock, 1.0)
        fast = asyncio.create_task(nc.request_raw("b", b"", timeout=1.0))
        await run_for(clock, 1.1)
        assert fast.done()
        assert isinstance(fast.exception(), TimeoutError)
        assert not slow.done()
        await run_for(clock, 3.0)
        assert slow.done()
        assert isinstance(slow.exception(), TimeoutError)
        assert nc._sweeper is not None
        nc._sweeper.cancel()
