"""The streams every service declares, as a deployment of an older version left them."""

from __future__ import annotations

import dataclasses

from jetsched.bus import topology
from jetsched.bus.connect import connect
from jetsched.core import subjects
from jetsched.devkit.fleet import Fleet


async def test_the_quarantine_is_bounded_also_where_it_was_not(fleet: Fleet) -> None:
    """What lands in the quarantine comes from hostile or broken peers, one entry a message: its bucket
    keeps at most `MAX_QUARANTINED`, and a bucket created unbounded by an older version gets the bound."""
    name = subjects.kv_stream(subjects.QUARANTINE_BUCKET)
    nc = await connect(fleet.url, "test")
    try:
        js = nc.jetstream()
        (current,) = [c for c in topology.streams(1) if c.name == name]
        await js.add_stream(dataclasses.replace(current, max_msgs=None))
        assert (await js.stream_info(name)).config.max_msgs in (None, -1)
        await topology.declare(js, replicas=1)
        assert (await js.stream_info(name)).config.max_msgs == topology.MAX_QUARANTINED
    finally:
        await nc.close()
