"""A reaper follows the feeds of the partitions it leases (`_Follower`, `RecordFeed.follow`) — also when
JetStream cannot start one for a while (a leader being elected): that partition is tried again, the
others are followed meanwhile, and what its views held is forgotten."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

from jetsched.bus.actors import Supervisor
from jetsched.bus.feed import RecordFeed
from jetsched.devkit.waiting import eventually
from jetsched.reaper.service import _Follower


class FlakyFeed:
    """A partition's feed whose first start fails as nats-py does while JetStream elects a leader; the
    fault injected at the one call the follower makes (everything else is the real follower and feed)."""

    failures = 1

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.caught_up = asyncio.Event()
        self.healthy = False

    async def start(self) -> None:
        if FlakyFeed.failures:
            FlakyFeed.failures -= 1
            raise TimeoutError("add_consumer timed out")
        self.healthy = True
        self.caught_up.set()

    async def stop(self) -> None:
        self.healthy = False


async def test_a_feed_that_cannot_start_is_tried_again_and_the_others_followed_meanwhile() -> None:
    feed = RecordFeed(MagicMock(), MagicMock(), lambda _: None, partitions=4)
    feed._feed_of = FlakyFeed  # type: ignore[assignment]
    await feed.start([])
    forgotten: list[set[int]] = []
    service: Any = SimpleNamespace(
        owned={0, 1}, refollow=asyncio.Event(), forget=forgotten.append, clock=MagicMock()
    )
    service.clock.sleep = asyncio.sleep
    service.following = lambda: set(service.owned)
    supervised = asyncio.create_task(Supervisor(backoff_s=0.01).run([_Follower(service, feed)]))
    try:
        await eventually(lambda: feed.ready(1), timeout=5, what="partition 1 followed at once")
        await eventually(lambda: feed.ready(0), timeout=5, what="partition 0 followed on a second try")
        assert feed.healthy
        assert forgotten[0] == {0}  # what the failed start's replay may have delivered is dropped
        service.owned = {1}
        service.refollow.set()  # partition 0 went to another replica
        await eventually(lambda: 0 not in feed.feeds, timeout=5, what="partition 0 dropped")
        assert forgotten[-1] == {0}
        assert feed.ready(1)
        assert not supervised.done()
    finally:
        supervised.cancel()
        await feed.stop()


def test_an_unplaced_workflow_waits_for_every_partition_the_rest_for_their_own() -> None:
    """While a workflow whose steps may be anywhere runs, it is advanced once every partition is
    replayed; jobs and placed workflows of a partition already replayed are acted on meanwhile."""
    from jetsched.bus.config import BusConfig
    from jetsched.core.shards import shard_of
    from jetsched.reaper.service import ReaperService

    service = ReaperService(BusConfig(record_partitions=2))
    service.owned = {0, 1}
    service.feed = RecordFeed(MagicMock(), MagicMock(), lambda _: None, partitions=2)
    ready, replaying = FlakyFeed(0), FlakyFeed(1)
    ready.caught_up.set()
    service.feed.feeds = {0: ready, 1: replaying}  # type: ignore[dict-item]
    unplaced, other = [key for key in (f"{n:026d}" for n in range(200)) if shard_of(key, 2) == 0][:2]
    service.advancer = MagicMock(unplaced={unplaced})
    assert service.owns(other)  # a job, or a placed workflow, of partition 0: replayed
    assert not service.owns(unplaced)  # its steps may be in partition 1, still replaying
    replaying.caught_up.set()
    assert service.owns(unplaced)
