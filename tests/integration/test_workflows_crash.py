"""Kill a service at each crash point of workflow submission and advancement, restart it, and check that
the workflow still ends succeeded with every step run exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from jetsched.bus.connect import connect
from jetsched.bus.records import Records, Store
from jetsched.bus.workflows import Workflows
from jetsched.core import steps, subjects
from jetsched.core import workflows as wf
from jetsched.core.errors import Conflict, NotFound
from jetsched.core.ids import new_ulid
from jetsched.core.schedules import fire_job_id
from jetsched.devkit import procs
from jetsched.devkit.crashes import CRASH, crashed, restart_clean, start
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.intake.workflow_submit import key_id
from jetsched.sdk import Client, WorkflowInfo, chain, chord, step, workflow_body

from .conftest import ms

pytestmark = pytest.mark.slow

SUBMIT_POINTS = [
    ("workflow.submit.after_key", False),
    ("workflow.submit.after_steps", False),
    ("workflow.submit.after_record", True),
]
ADVANCE_POINTS = [
    "workflow.advance.before_cas",
    "workflow.advance.after_cas",
    "workflow.release.after_cas",
    "workflow.direct.after_release",
]
#: Every workflow crash point, for test_crash_points' inventory.
WORKFLOW_POINTS = (
    {p for p, _ in SUBMIT_POINTS}
    | set(ADVANCE_POINTS)
    | {"workflow.expand.after_chunk", "workflow.abandon.after_record", "workflow.orphan.after_fence"}
    | {"timer.fire.after_steps", "timer.fire.after_workflow"}
)

DIAMOND = chain(
    step("a", "probe.sleep", 0.01),
    chord([step("b", "probe.sleep", 0.01), step("c", "probe.sleep", 0.01)], step("d", "probe.sleep", 0.01)),
)


@pytest.fixture
async def client(fleet: Fleet) -> AsyncIterator[Client]:
    async with Client(fleet.url, timeout=20) as connected:
        yield connected


async def finished(client: Client, workflow_id: str) -> WorkflowInfo:
    async def final() -> WorkflowInfo | None:
        view = await client.workflow(workflow_id)
        return view if view.finished else None

    view = await eventually(final, timeout=60, what="workflow final")
    assert view is not None  # eventually returns only what is truthy
    return view


def ran_once(fleet: Fleet, view: WorkflowInfo) -> None:
    for name, s in view.steps.items():
        if s.instances is None:
            assert len(fleet.started(s.job_id)) == 1, name


@pytest.mark.parametrize(("point", "duplicate"), SUBMIT_POINTS)
async def test_intake_dies_during_workflow_submit(
    fleet: Fleet, client: Client, point: str, duplicate: bool
) -> None:
    """A client that resubmits with its key after intake died gets one workflow, each step run once."""
    intake = start(fleet, "intake", point)
    fleet.worker()
    await client.stats()  # intake is up: the impatient submit below must reach it
    impatient = Client(fleet.url, timeout=2)
    impatient.keyed_retry_s = 0
    await impatient.connect()
    with pytest.raises((TimeoutError, NatsTimeoutError)):
        await impatient.submit_workflow(DIAMOND, key="diamond-1")
    await impatient.close()
    await crashed(intake)
    restart_clean(intake)
    reply = await client.submit_workflow(DIAMOND, key="diamond-1")
    assert reply.duplicate is duplicate
    view = await finished(client, reply.id)
    assert view.state == "succeeded"
    ran_once(fleet, view)
    assert [w.id for w in (await client.workflows()).workflows] == [reply.id]
    assert len((await client.list()).jobs) == 4


@pytest.mark.parametrize("point", ADVANCE_POINTS)
async def test_reaper_dies_while_advancing(fleet: Fleet, client: Client, point: str) -> None:
    """The reaper dies before or after the workflow CAS, or between two releases: restarted, it finishes
    the advancement, and every step runs once."""
    reaper = start(fleet, "reaper", point)
    fleet.worker()
    reply = await client.submit_workflow(DIAMOND)
    await crashed(reaper)
    restart_clean(reaper)
    view = await finished(client, reply.id)
    assert view.state == "succeeded"
    ran_once(fleet, view)


async def test_reaper_dies_while_expanding_a_map(fleet: Fleet, client: Client) -> None:
    """A map step half expanded when the reaper died: restarted, it creates the rest; each element runs
    once and the results come back in order."""
    reaper = start(fleet, "reaper", "workflow.expand.after_chunk")
    fleet.worker("--concurrency", "20")
    flow = chain(step("list", "probe.list", 100), step("each", "probe.item", map_over="list"))
    reply = await client.submit_workflow(flow)
    await crashed(reaper)
    restart_clean(reaper)
    view = await finished(client, reply.id)
    assert view.state == "succeeded"
    assert view.steps["each"].result == list(range(100))
    starts = [r.job_id for r in fleet.runs() if r.event == "start"]
    assert len(starts) == len(set(starts)) == 101


ABANDON = {"JETSCHED_ABANDON_AFTER_S": "1"}


def start_abandoning(fleet: Fleet, crash: dict[str, str]) -> dict[str, procs.Proc]:
    """The four services with a 1 s abandon grace in the reaper; `crash` maps a service to its point."""
    return {
        name: fleet.service(
            name,
            env={**(ABANDON if name == "reaper" else {}), **({CRASH: crash[name]} if name in crash else {})},
        )
        for name in procs.SERVICES
    }


async def abandoned_submit(fleet: Fleet, client: Client, key: str | None) -> None:
    """A workflow submit whose intake dies before it starts the workflow; nobody resubmits."""
    await client.stats()
    impatient = Client(fleet.url, timeout=2)
    impatient.keyed_retry_s = 0
    await impatient.connect()
    with pytest.raises((TimeoutError, NatsTimeoutError)):
        await impatient.submit_workflow(DIAMOND, key=key)
    await impatient.close()


async def nothing_left(fleet: Fleet, client: Client, key: str | None = None) -> None:
    """No job and no workflow visible; with `key`, the record its entry names is gone from the bucket."""

    async def empty() -> bool:
        return not (await client.list()).jobs and not (await client.workflows()).workflows

    await eventually(empty, timeout=30, what="the abandoned submit's step jobs cleared")
    if key is None:
        return
    nc = await connect(fleet.url, "test")
    try:
        data, _ = await Store(nc, subjects.KEYS_BUCKET).get(key_id(key))

        async def purged() -> bool:
            try:
                await Store(nc, subjects.WORKFLOWS_BUCKET).get(data.decode())
            except NotFound:
                return True
            return False

        await eventually(purged, timeout=30, what="the abandoned workflow's record purged")
    finally:
        await nc.close()


async def test_abandoned_submit_is_cleared(fleet: Fleet, client: Client) -> None:
    """A submit whose intake died after its step jobs, before its record, never resubmitted, is cleared
    after the reaper's grace: no waiting step job stays visible, nothing runs; a late keyed resubmit
    starts a new workflow under a new id, whose steps each run once."""
    intake = start_abandoning(fleet, {"intake": "workflow.submit.after_steps"})["intake"]
    fleet.worker()
    await abandoned_submit(fleet, client, "late-1")
    await crashed(intake)
    restart_clean(intake)
    await nothing_left(fleet, client, "late-1")
    assert fleet.runs() == []
    reply = await client.submit_workflow(DIAMOND, key="late-1")
    assert reply.duplicate is False
    view = await finished(client, reply.id)
    assert view.state == "succeeded"
    ran_once(fleet, view)
    assert len((await client.list()).jobs) == 4


async def test_reaper_dies_while_clearing_an_abandoned_submit(fleet: Fleet, client: Client) -> None:
    """The reaper dies after fencing an abandoned workflow's record key, before its step jobs:
    restarted, it sees the jobs still waiting for a record that cannot come, and clears them."""
    started = start_abandoning(
        fleet, {"intake": "workflow.submit.after_steps", "reaper": "workflow.orphan.after_fence"}
    )
    await abandoned_submit(fleet, client, None)
    await crashed(started["intake"])
    restart_clean(started["intake"])
    await crashed(started["reaper"])
    assert len((await client.list()).jobs) == 4
    restart_clean(started["reaper"])
    await nothing_left(fleet, client)


async def test_lost_cancel_of_a_ready_step_is_redone(fleet: Fleet, client: Client) -> None:
    """A step dies in a fail-fast workflow and the reaper dies right after recording it, before
    cancelling the other, ready step: restarted, its check cancels that step and the workflow fails."""
    reaper = start(fleet, "reaper", "workflow.advance.after_cas")
    fleet.worker()
    flow = [step("bad", "probe.poison", max_attempts=1), step("idle", "probe.nobody")]
    reply = await client.submit_workflow(flow)
    await crashed(reaper)
    idle = reply.steps["idle"]
    assert (await client.get(idle)).state == "ready"
    restart_clean(reaper)
    view = await finished(client, reply.id)
    assert view.state == "failed"
    assert view.steps["idle"].state == "cancelled"
    assert (await client.get(idle)).state == "cancelled"


async def test_timer_dies_after_starting_a_scheduled_workflow(fleet: Fleet, client: Client) -> None:
    """The timer dies after a fire's workflow record is created, before its first steps are released
    and before the ledger: restarted, it replays the fire and finds the workflow (no second one); the
    reaper's check releases its first steps; every fire's workflow succeeds, each step run once."""
    timer = start(fleet, "timer", "timer.fire.after_workflow")
    fleet.worker()
    await client.create_workflow_schedule("crashy", DIAMOND, every=1.0)
    await crashed(timer)
    restart_clean(timer)

    async def fired() -> bool:
        return (await client.schedule("crashy")).fired >= 3

    await eventually(fired, timeout=30, what="three fires")
    await client.schedule("crashy", "pause")
    history = (await client.schedule("crashy")).history
    ids = [e.job_id for e in history if e.job_id]
    assert ids == [fire_job_id("crashy", ms(e.nominal)) for e in history if e.job_id]
    for workflow_id in ids:
        view = await finished(client, workflow_id)
        assert view.state == "succeeded"
        ran_once(fleet, view)
    assert len((await client.workflows()).workflows) == len(ids)


async def test_timer_dies_between_a_scheduled_workflows_steps_and_its_record(
    fleet: Fleet, client: Client
) -> None:
    """The timer dies after a fire's step jobs, before the workflow's record, and no timer comes back.
    While the schedule may still fire it, the reaper leaves the waiting jobs to the timer's replay; once
    the schedule is deleted, it fences the record's key and clears them: nothing is left waiting."""
    timer = start_abandoning(fleet, {"timer": "timer.fire.after_steps"})["timer"]
    fleet.worker()
    await client.create_workflow_schedule("orphan", DIAMOND, every=1.0)
    await crashed(timer)
    jobs = (await client.list()).jobs
    assert len(jobs) == 4
    assert {j.state for j in jobs} == {"waiting"}
    await asyncio.sleep(3)  # past the 1 s grace: still the timer's to finish
    assert len((await client.list()).jobs) == 4
    await client.delete_schedule("orphan")
    await nothing_left(fleet, client)
    assert jobs[0].workflow is not None
    workflow_id = jobs[0].workflow["id"]
    nc = await connect(fleet.url, "test")
    try:
        # Fenced: a replay that came now could not create the record.
        with pytest.raises(Conflict):
            await Store(nc, subjects.WORKFLOWS_BUCKET).put_if(workflow_id, b"{}", 0)
    finally:
        await nc.close()
    assert fleet.runs() == []


async def legacy_half_made(fleet: Fleet, key: str | None) -> str:
    """What an intake of an earlier version (record first) left when it died mid-submit: the record
    `creating` and the step jobs `waiting`; the workflow's id."""
    nc = await connect(fleet.url, "test")
    try:
        records = Records([Store(nc, subjects.JOBS_BUCKET)], Store(nc, subjects.TIMERS_BUCKET))
        workflows = Workflows(nc, records)
        now = round(time.time() * 1000)
        request = wf.WorkflowRequest.model_validate(workflow_body(DIAMOND, key))
        record, ordered = wf.new_record(request, new_ulid(now), now, None)
        if key is not None:
            await Store(nc, subjects.KEYS_BUCKET).put_if(key_id(key), record.id.encode(), 0)
        await workflows.put(record, 0)
        for n, s in enumerate(ordered):
            await records.create(steps.waiting_job(s, record, n, now, None))
        return record.id
    finally:
        await nc.close()


async def test_a_half_made_submit_of_an_earlier_version_is_completed_by_its_resubmit(
    fleet: Fleet, client: Client
) -> None:
    """A rolling deploy: the `creating` record an older intake left is started by the keyed resubmit."""
    start(fleet, None, "")
    fleet.worker()
    await client.stats()  # intake is up: the buckets exist
    workflow_id = await legacy_half_made(fleet, "legacy-1")
    reply = await client.submit_workflow(DIAMOND, key="legacy-1")
    assert (reply.id, reply.duplicate) == (workflow_id, False)
    view = await finished(client, reply.id)
    assert view.state == "succeeded"
    ran_once(fleet, view)


async def test_reaper_dies_while_clearing_a_half_made_submit_of_an_earlier_version(
    fleet: Fleet, client: Client
) -> None:
    """The `creating` record an older intake left, never resubmitted, is cleared after the grace; the
    reaper dies after purging the record, before the step jobs: restarted, it sees the record gone and
    the jobs still waiting, and clears them."""
    reaper = start_abandoning(fleet, {"reaper": "workflow.abandon.after_record"})["reaper"]
    await client.stats()
    await legacy_half_made(fleet, None)
    await crashed(reaper)
    assert len((await client.list()).jobs) == 4
    restart_clean(reaper)
    await nothing_left(fleet, client)
