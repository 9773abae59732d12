"""A handler that stops calling `job.heartbeat()` is timed out (the worker's watch), on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from jetsched.core.clock import FakeClock
from jetsched.sdk._worker import _NoHeartbeat, _watch


async def settle() -> None:
    """Let every task run until it waits (a sleep starts on the clock only once its task runs)."""
    for _ in range(5):
        await asyncio.sleep(0)


class TestWatch:
    async def test_silent_handler_is_cancelled_after_the_timeout(self) -> None:
        """No heartbeat for `timeout_s`: the handler is cancelled and the attempt times out."""
        clock = FakeClock(start_ms=10_000, autojump=False)
        beats = [clock.now()]
        handler = asyncio.ensure_future(asyncio.Event().wait())
        watching = asyncio.create_task(_watch(handler, 2.0, beats, clock))
        await settle()
        clock.advance(1.999)
        await settle()
        assert not watching.done()
        clock.advance(0.001)
        with pytest.raises(_NoHeartbeat, match=r"no heartbeat for 2\.0s"):
            await watching
        await settle()
        assert handler.cancelled()

    async def test_heartbeats_keep_the_handler_alive(self) -> None:
        """Each heartbeat starts the timeout over; the handler's result comes back."""
        clock = FakeClock(autojump=False)
        beats = [clock.now()]
        finish = asyncio.Event()

        async def handler() -> str:
            await finish.wait()
            return "done"

        watching = asyncio.create_task(_watch(handler(), 2.0, beats, clock))
        for _ in range(5):
            await settle()
            clock.advance(1.5)
            beats[0] = clock.now()
        await settle()
        assert not watching.done()
        finish.set()
        assert await watching == "done"
