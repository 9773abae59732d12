"""A worker whose outcome reports cannot be stored for a while (the outcomes stream failing over, full, at
its limits): it keeps heartbeating, holds no more than a heartbeat may list, and loses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import nats
import pytest
from nats.aio.msg import Msg

from jetsched.core import subjects
from jetsched.core.models import Heartbeat, WorkMessage, max_listed
from jetsched.devkit.stack import running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Job, Tasks

if TYPE_CHECKING:
    from jetsched.devkit.nats_server import NatsServer
    from jetsched.devkit.stack import Stack
    from jetsched.sdk import Client

quick = Tasks()


@quick.task("limits.quick")
async def run_quickly(job: Job) -> int:
    await asyncio.sleep(0.01)
    return 1


class Beats:
    """The heartbeats a session sends, each checked against the model."""

    def __init__(self) -> None:
        self.seen: list[Heartbeat] = []

    async def take(self, msg: Msg) -> None:
        self.seen.append(Heartbeat.model_validate_json(msg.data))

    async def over(self, seconds: float) -> list[Heartbeat]:
        self.seen.clear()
        await asyncio.sleep(seconds)
        return list(self.seen)


async def test_work_beyond_what_heartbeats_may_list_is_not_held(nats_server: NatsServer) -> None:
    """No stream stores outcomes here: every finished job stays held. At `max_listed` the worker takes no
    more (dropping the work message, which the reaper gives back unspent), and heartbeats go on listing
    what it holds — they used to stop for good once it held more than that."""
    nc = await nats.connect(nats_server.url)
    limit = max_listed(2)
    try:
        async with running_worker(
            quick, nats_server.url, concurrency=2, heartbeat_ms=100, drain_timeout=0.2
        ) as w:
            await asyncio.wait_for(w.started.wait(), 20)
            beats = Beats()
            await nc.subscribe(subjects.heartbeat(w.session), cb=beats.take)
            # Its subscriptions reached the server before a heartbeat that followed them.
            await eventually(lambda: beats.seen, timeout=10, what="a heartbeat")
            for attempt in range(1, limit + 41):
                message = WorkMessage(
                    id="01KBZ3R6X9T2M0Q7D5W8C4N1HE",
                    capability="limits.quick",
                    attempt=attempt,
                    token="t",
                    priority=5,
                    timeout_s=60,
                    created_at_ms=1,
                    run_at_ms=1,
                )
                await nc.publish(subjects.work("limits.quick", w.session), message.model_dump_json().encode())
            await eventually(lambda: len(w.held) >= limit and not w.executing, timeout=20, what="held full")
            seen = await beats.over(0.6)
            assert len(w.held) == limit
            assert len(seen) >= 3, "heartbeats stopped"
            assert {len(beat.running) for beat in seen} == {limit}
    finally:
        await nc.close()


@pytest.mark.serial  # a worker's heartbeats must keep their pace: on a loaded machine the session is presumed lost
async def test_outcomes_that_cannot_be_stored_lose_nothing(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """The reviewer's case: a 2-slot worker, 150 quick jobs, the outcomes stream full. The session stays
    alive (heartbeats, within bounds) instead of being presumed lost with every job it held; once the
    stream stores again, every job succeeds without a failed attempt."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        config = (await js.stream_info(subjects.OUTCOMES_STREAM)).config
        # A stream limit no report fits: each is refused, as during a failover or with a full disk.
        await js.update_stream(dataclasses.replace(config, max_msg_size=16))
        async with running_worker(quick, nats_server.url, concurrency=2) as worker:
            await asyncio.wait_for(worker.started.wait(), 20)
            beats = Beats()
            await nc.subscribe(subjects.heartbeat(worker.session), cb=beats.take)
            replies = [await client.submit("limits.quick") for _ in range(150)]
            await eventually(lambda: len(worker.held) >= 66, timeout=30, what="reports piling up")
            seen = await beats.over(3.0)
            assert len(seen) >= 4, "heartbeats stopped"
            assert max(len(beat.running) for beat in seen) <= max_listed(2)
            assert len(worker.held) <= max_listed(2)
            await js.update_stream(config)
            records = [await client.wait(reply.id, timeout=60) for reply in replies]
        assert {r.state for r in records} == {"succeeded"}
        # Nothing lost or failed: a job dropped at the bound was handed back unspent (`releases`).
        assert [r.errors for r in records if r.errors] == []
        assert {r.attempt - r.releases for r in records} == {1}
    finally:
        await nc.close()
