"""Job records on a real JetStream KV bucket: create once, CAS updates, purge fences re-creation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest

from jetsched.bus import topology
from jetsched.bus.connect import connect
from jetsched.bus.records import Records, transition
from jetsched.core import states, subjects
from jetsched.core.errors import Conflict, NotFound
from jetsched.core.models import JobRequest, JobState
from jetsched.devkit.nats_server import NatsServer

NOW = 1_700_000_000_000


@pytest.fixture
async def records(nats_server: NatsServer) -> AsyncIterator[Records]:
    nc = await connect(nats_server.url, "test")
    js = nc.jetstream()
    await topology.declare(js, 1)
    yield Records.open(nc)
    await nc.close()


def new(job_id: str = "000000000000000000000000J1"):  # type: ignore[no-untyped-def]
    return states.accept(JobRequest(payload={"x": 1}), job_id, "a", NOW, None)


async def test_create_once(records: Records) -> None:
    """An id can be created once; the second create is a conflict."""
    revision = await records.create(new())
    assert revision > 0
    with pytest.raises(Conflict):
        await records.create(new())
    record, got = await records.get("000000000000000000000000J1")
    assert (record, got) == (new(), revision)


async def test_update_needs_current_revision(records: Records) -> None:
    """A write with a stale revision loses; the winner's value stays."""
    revision = await records.create(new())
    claimed = states.claim(new(), "w", "s1", "t1", NOW)
    second = await records.update(claimed, revision)
    with pytest.raises(Conflict):
        await records.update(states.cancel(new(), NOW), revision)
    record, got = await records.get("000000000000000000000000J1")
    assert (record.state, got) == (JobState.RUNNING, second)


async def test_transition_rereads_on_conflict(records: Records) -> None:
    """`transition` re-reads after a lost CAS and re-decides on the stored record."""
    revision = await records.create(new())
    await records.update(states.claim(new(), "w", "s1", "t1", NOW), revision)
    assert await transition(records, new(), revision, lambda r: states.claim(r, "w", "s2", "t2", NOW)) is None
    result = await transition(records, new(), revision, lambda r: states.cancel(r, NOW))
    assert result is not None
    before, after, _ = result
    assert (before.state, after.state) == (JobState.RUNNING, JobState.CANCELLED)


async def test_purge_is_final(records: Records) -> None:
    """A purged id reads as missing and can never be created again."""
    revision = await records.create(new())
    await records.purge("000000000000000000000000J1", revision)
    with pytest.raises(NotFound):
        await records.get("000000000000000000000000J1")
    with pytest.raises(Conflict):
        await records.create(new())


async def test_declare_is_idempotent(nats_server: NatsServer) -> None:
    """Declaring the topology again (another service starting) changes nothing and fails nothing."""
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await topology.declare(js, 1)
    await topology.declare(js, 1)
    info = await js.stream_info(subjects.kv_stream(subjects.JOBS_BUCKET))
    assert info.config.max_msgs_per_subject == 1
    await nc.close()
