"""The live side: one headers-only record feed per dashboard, fanned out to every open event stream.

Each browser gets a bounded queue. A browser that cannot keep up (a slow link, a background tab) is not
allowed to grow the server's memory: once its queue is full its events are dropped and it is sent one
`resync`, after which it refetches what it shows. The feed's start-up replay (the latest revision of
every job) is not sent to anyone: a browser loads its tables from the API and follows changes from then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from jetsched.bus.connect import connect
from jetsched.bus.feed import RecordFeed
from jetsched.bus.topology import record_partitions

from .events import RESYNC, Moves, job_event

if TYPE_CHECKING:
    from jetsched.bus.auth import NatsAuth
    from jetsched.bus.direct import Connection
    from jetsched.core.changes import Change

log = logging.getLogger(__name__)

#: Events one browser may have waiting before it is told to resync.
QUEUE_SIZE = 1000
#: Event streams one dashboard serves at once. Each may hold `QUEUE_SIZE` events (~100 KB) and a socket's
#: buffers while its client reads slowly or not at all, so without a cap anyone who can reach the page
#: could grow the dashboard's memory by opening streams; beyond it a stream is refused (503).
MAX_STREAMS = 100


class Stream:
    """One browser's events."""

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(size + 1)
        self.size = size
        self.behind = False

    def put(self, event: str, data: Any) -> None:
        if self.behind:
            return
        if self.queue.qsize() >= self.size:
            self.behind = True
            self.queue.put_nowait((RESYNC, {}))
            return
        self.queue.put_nowait((event, data))

    async def get(self) -> tuple[str, Any]:
        item = await self.queue.get()
        if item[0] == RESYNC:
            self.behind = False
        return item


class Hub:
    """The record feed, and the streams it feeds."""

    def __init__(self, nats_url: str, auth: NatsAuth | None = None, max_streams: int = MAX_STREAMS) -> None:
        self.nats_url = nats_url
        self.auth = auth
        self.max_streams = max_streams
        self.streams: set[Stream] = set()
        self.live = False
        self._nc: Connection | None = None
        self._feed: RecordFeed | None = None
        self._moves = Moves()

    async def start(self, timeout: float = 10.0) -> None:
        self._nc = await connect(self.nats_url, "jetsched-dashboard-feed", self.auth, timeout=timeout)
        js = self._nc.jetstream()
        partitions = await record_partitions(js)
        self._feed = RecordFeed(self._nc, js, self._on_change, headers_only=True, partitions=partitions)
        await self._feed.start()
        self.live = True

    async def stop(self) -> None:
        if self._feed is not None:
            with contextlib.suppress(Exception):
                await self._feed.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    def subscribe(self) -> Stream | None:
        """A new stream, or None when `max_streams` are open (until one is unsubscribed)."""
        if len(self.streams) >= self.max_streams:
            return None
        stream = Stream()
        self.streams.add(stream)
        return stream

    def unsubscribe(self, stream: Stream) -> None:
        self.streams.discard(stream)

    def _on_change(self, change: Change) -> None:
        if not self._moves.news(change) or self._feed is None or not self._feed.caught_up.is_set():
            return
        event = job_event(change)
        for stream in self.streams:
            stream.put("job", event)
