"""Finished jobs leave the `jobs` bucket for the history stream, and are still found, listed and fenced."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from jetsched.bus import topology
from jetsched.bus.connect import connect
from jetsched.bus.direct import Connection
from jetsched.bus.records import Records, Store
from jetsched.core import states, subjects
from jetsched.core.errors import Conflict, NotFound
from jetsched.core.models import JobRequest, JobState
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, Job, Tasks, chain, chord, step

NOW = 1_700_000_000_000
JOB = "000000000000000000000000H1"


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Connection]:
    connection = await connect(nats_server.url, "test")
    await topology.declare(connection.jetstream(), 1)
    yield connection
    await connection.close()


def succeeded(job_id: str = JOB, schedule_id: str | None = None):  # type: ignore[no-untyped-def]
    record = states.accept(JobRequest(payload={"x": 1}), job_id, "a.b", NOW, None)
    return record.model_copy(update={"state": JobState.SUCCEEDED, "schedule_id": schedule_id})


async def copies(nc: Connection, job_id: str) -> int:
    """How many messages history holds for a job."""
    info = await nc.jetstream().stream_info(
        subjects.HISTORY_STREAM, subjects_filter=subjects.history_filter(job_id)
    )
    return sum((info.state.subjects or {}).values())


async def in_bucket(nc: Connection, job_id: str) -> bool:
    """Whether the bucket still has any message for the key (a value or a marker)."""
    request = orjson.dumps({"last_by_subj": f"$KV.{subjects.JOBS_BUCKET}.{job_id}"})
    reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{subjects.kv_stream(subjects.JOBS_BUCKET)}", request)
    return "error" not in orjson.loads(reply.data)


async def test_retire_moves_once_and_get_finds_it(nc: Connection) -> None:
    """A retired record is read from history; retiring it again (a replay) stores no second copy."""
    records = Records.open(nc)
    revision = await records.create(succeeded())
    await records.retire(succeeded(), revision)
    with pytest.raises(NotFound):
        await records.store_of(JOB).get(JOB)
    record, _ = await records.get(JOB)
    assert record.state is JobState.SUCCEEDED
    with pytest.raises(Conflict):  # the crash-and-replay case: history first, then the purge's CAS
        await records.retire(succeeded(), revision)
    assert await copies(nc, JOB) == 1


async def test_fence_outlives_the_marker_for_derived_ids(nc: Connection) -> None:
    """Once the bucket's marker has expired, a fire's id is still refused (history has it); nothing of the
    retired key is left in the bucket."""
    records = Records.open(nc)
    fire = succeeded(schedule_id="nightly")
    await records.retire(fire, await records.create(fire), fence_s=1)
    await eventually(lambda: _gone(nc, JOB), timeout=10, what="the marker expired")
    with pytest.raises(Conflict):
        await records.create(fire.model_copy(update={"state": JobState.READY}))


async def _gone(nc: Connection, job_id: str) -> bool:
    return not await in_bucket(nc, job_id)


async def retired(nc: Connection, job_id: str) -> bool:
    """Whether the job has left the bucket (a marker may remain) and history holds it once."""
    try:
        await Store(nc, subjects.JOBS_BUCKET).get(job_id)
    except NotFound:
        return await copies(nc, job_id) == 1
    return False


async def test_finished_jobs_are_listed_and_counted_from_history(nats_server: NatsServer) -> None:
    """Succeeded and cancelled jobs leave the bucket; `jobs.get`, keyed resubmits, `jobs.list` (all states
    and by state, paged) and `stats` still see them, dead letters stay in the bucket."""
    tasks = Tasks()

    @tasks.task("h")
    async def h(job: Job) -> None:
        if job.payload == "fail":
            raise ValueError("no")

    async with (
        Stack(nats_server.url),
        Client(nats_server.url) as client,
        running_worker(tasks, nats_server.url),
    ):
        nc = await connect(nats_server.url, "test")
        ok = [await client.submit("h", n, key=f"k{n}") for n in range(3)]
        dead = await client.submit("h", "fail", max_attempts=1)
        cancelled = await client.submit("h", delay=60)
        await client.cancel(cancelled.id)
        for reply in ok:
            await client.wait(reply.id)
        await client.wait(dead.id)
        finished = {r.id for r in ok} | {cancelled.id}
        for job_id in finished:
            await eventually(lambda j=job_id: retired(nc, j), timeout=10, what="retired")  # type: ignore[misc]
        await Store(nc, subjects.JOBS_BUCKET).get(dead.id)
        assert (await client.get(ok[0].id)).state == "succeeded"
        assert (await client.submit("h", 0, key="k0")).duplicate

        seen, after = [], None
        while True:
            page = await client.list(limit=2, after=after)
            seen += [(j.id, j.state) for j in page.jobs]
            if page.next is None:
                break
            after = page.next
        assert seen[0] == (dead.id, "dead")  # live work and dead letters first, then history
        assert {job_id for job_id, _ in seen} == finished | {dead.id}
        assert {j.id for j in (await client.list(state="cancelled")).jobs} == {cancelled.id}
        assert {j.id for j in (await client.list(state="succeeded", capability="h")).jobs} == {
            r.id for r in ok
        }
        stats = await client.stats()
        assert stats.history.jobs == 4
        assert stats.capabilities["h"]["succeeded"] == 3
        await nc.close()


async def test_a_workflows_step_jobs_leave_once_it_took_them_in(nats_server: NatsServer) -> None:
    """A step's job is retired only after its workflow's record applied its ending — retired first, a
    reaper dying before the advance would leave nothing to replay — so a finished workflow's step jobs
    all end up in history, and the workflow reads their results from there."""
    tasks = Tasks()

    @tasks.task("w")
    async def w(job: Job) -> int:
        return len(job.parents or {})

    flow = chain(step("a", "w"), chord([step("b", "w"), step("c", "w")], step("d", "w")))
    async with (
        Stack(nats_server.url),
        Client(nats_server.url) as client,
        running_worker(tasks, nats_server.url),
    ):
        nc = await connect(nats_server.url, "test")
        reply = await client.submit_workflow(flow)

        async def done() -> bool:
            return (await client.workflow(reply.id)).state == "succeeded"

        await eventually(done, timeout=20, what="the workflow succeeded")
        for job_id in reply.steps.values():
            await eventually(lambda j=job_id: retired(nc, j), timeout=10, what="retired")  # type: ignore[misc]
        view = await client.workflow(reply.id)
        assert view.steps["d"].result == 2
        await nc.close()
