"""The record feed's watch for a quiet consumer, on a fake clock: nothing sleeps."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from jetsched.bus.feed import HEARTBEAT_S, KeyFeed
from jetsched.core.clock import FakeClock

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from jetsched.bus.direct import Connection

#: An idle heartbeat as JetStream sends it to a push consumer that has delivered nothing yet.
IDLE = b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 0\r\n\r\n"


class Connected:
    """The two things the watch asks of its connection."""

    is_closed = False
    is_connected = True


class Watched(KeyFeed):
    """A feed whose consumer is never really recreated: the watch's verdicts are counted instead."""

    restarts = 0

    def _restart(self) -> None:
        self.restarts += 1


def watched(clock: FakeClock) -> Watched:
    nc = cast("Connection", Connected())
    return Watched(nc, cast("JetStreamContext", None), "b", lambda *_: None, clock=clock)


async def run_for(clock: FakeClock, seconds: float, feed: Watched | None = None) -> None:
    """Move the clock on a tenth of a heartbeat at a time; with `feed`, it hears a heartbeat each one."""
    for step in range(round(seconds * 10 / HEARTBEAT_S)):
        if feed is not None and step % 10 == 0:
            feed._on_raw(b"inbox", b"", b"", IDLE)
        clock.advance(HEARTBEAT_S / 10)
        await asyncio.sleep(0)


class TestQuietWatch:
    async def test_heartbeats_keep_it(self) -> None:
        """A consumer whose idle heartbeats arrive is left alone, however long nothing else comes."""
        clock = FakeClock(autojump=False)
        feed = watched(clock)
        watch = asyncio.create_task(feed._watch())
        await run_for(clock, 30 * HEARTBEAT_S, feed)
        assert feed.restarts == 0
        watch.cancel()

    async def test_silence_recreates_it(self) -> None:
        """Once nothing at all arrives, the consumer is recreated within two heartbeat checks."""
        clock = FakeClock(autojump=False)
        feed = watched(clock)
        watch = asyncio.create_task(feed._watch())
        await run_for(clock, 5 * HEARTBEAT_S, feed)
        assert feed.restarts == 0
        await run_for(clock, 4 * HEARTBEAT_S + HEARTBEAT_S / 10)
        assert feed.restarts >= 1
        watch.cancel()
