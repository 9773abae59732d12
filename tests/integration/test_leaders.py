"""Stream leaders spread over the deployed 3-node cluster: with every record partition led by one node,
the spreader's stepdowns (`placement.preferred`) leave each node leading one."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from nats.errors import Error as NatsError

from jetsched.bus import topology
from jetsched.bus.connect import connect
from jetsched.bus.leaders import LeaderSpreader, Led, led
from jetsched.core import subjects
from jetsched.core.clock import SystemClock
from jetsched.devkit.cluster import NatsCluster
from jetsched.devkit.waiting import eventually

pytestmark = pytest.mark.slow

STREAMS = [subjects.kv_stream(subjects.jobs_bucket(p)) for p in range(3)]


async def test_bunched_partition_leaders_are_spread(cluster: NatsCluster) -> None:
    nc = await connect(cluster.urls, "test")
    try:

        async def declared() -> bool:  # once the cluster has elected its meta leader
            try:
                await topology.declare(nc.jetstream(), replicas=3, partitions=3)
            except (NatsError, TimeoutError):
                return False
            return True

        await eventually(declared, timeout=30, what="the partitions declared on the cluster")
        spreader = LeaderSpreader(nc, STREAMS, lambda: True, SystemClock())

        async def infos() -> list[Led]:
            found = []
            for stream in STREAMS:
                try:
                    data, _ = await nc.request_raw(f"$JS.API.STREAM.INFO.{stream}", b"", 2)
                except (NatsError, TimeoutError):  # mid-election
                    found.append(Led(stream, None, ()))
                else:
                    found.append(led(stream, orjson.loads(data)))
            return found

        async def leaders() -> list[str | None]:
            return [info.leader for info in await infos()]

        async def current() -> bool:  # every stream led, every replica caught up
            return all(len(info.peers) == 3 for info in await infos())

        await eventually(current, timeout=30, what="every partition led with current replicas")
        first = (await leaders())[0]
        assert first is not None
        for stream in STREAMS:  # bunch them all on the first one's node

            async def on_first(stream: str = stream) -> bool:
                if (await leaders())[STREAMS.index(stream)] == first:
                    return True
                body = orjson.dumps({"placement": {"preferred": first}})
                with contextlib.suppress(NatsError, TimeoutError):  # mid-election: asked again
                    await nc.request_raw(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, 2)
                return False

            await eventually(on_first, timeout=30, what=f"{stream} led by {first}")
            await eventually(current, timeout=30, what="replicas current again")

        async def spread() -> bool:
            if len(set(await leaders())) == 3:
                return True
            if await current():
                with contextlib.suppress(NatsError, TimeoutError):  # mid-election: looked at again
                    await spreader.look()
            return False

        await eventually(spread, timeout=60, interval=1.0, what="one partition led by each node")
        assert spreader.moved >= 2
        assert await spreader.look() is None  # even: left alone
    finally:
        await nc.close()
