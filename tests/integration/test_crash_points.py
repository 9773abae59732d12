"""Kill a process at each named crash point, restart it, and check the promise still holds.

For every point: the job reaches a final state, runs at most once more than it would have without the
crash, and when it did run twice its record says why (a lost worker, a released claim).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from jetsched.bus.connect import connect
from jetsched.bus.crashpoints import POINTS
from jetsched.devkit.crashes import CRASH, crashed, restart_clean, start
from jetsched.devkit.fleet import Fleet
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, JobInfo

from .test_history import copies, retired
from .test_workflows_crash import WORKFLOW_POINTS

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(fleet: Fleet) -> AsyncIterator[Client]:
    async with Client(fleet.url, timeout=20) as connected:
        yield connected


async def final(client: Client, job_id: str) -> JobInfo:
    return await client.wait(job_id, timeout=40)


def explained(record: JobInfo, runs: int) -> None:
    """At most one extra run, and an extra run is accounted for in the record."""
    assert runs <= 2
    if runs == 2:
        assert record.errors or record.releases, record


SERVICE_POINTS = [
    ("timer", "timer.due.before_cas", 0.3),
    ("timer", "timer.due.after_cas", 0.3),
    ("dispatcher", "dispatcher.claim.before_cas", None),
    ("dispatcher", "dispatcher.claim.after_cas", None),
    ("dispatcher", "dispatcher.claim.after_send", None),
    ("reaper", "reaper.outcome.before_cas", None),
    ("reaper", "reaper.outcome.after_cas", None),
]
KEYED_SUBMIT_POINTS = [("intake.submit.after_key", False), ("intake.submit.after_create", True)]
WORKER_POINTS = [("worker.received", 1), ("worker.after_run", 2), ("worker.after_report", 1)]


@pytest.mark.parametrize(("service", "point", "delay"), SERVICE_POINTS)
async def test_service_dies_mid_transition(
    fleet: Fleet, client: Client, service: str, point: str, delay: float | None
) -> None:
    """The job still completes exactly once after the service restarts."""
    target = start(fleet, service, point)
    assert target is not None
    fleet.worker()
    reply = await client.submit("probe.sleep", 0.05, delay=delay)
    await crashed(target)
    restart_clean(target)
    record = await final(client, reply.id)
    assert record.state == "succeeded"
    assert len(fleet.started(reply.id)) == 1
    if point == "dispatcher.claim.after_cas":
        # The claim never reached the worker: handed back without using an attempt.
        assert (record.attempt, record.releases) == (2, 1)


@pytest.mark.parametrize(("point", "duplicate"), KEYED_SUBMIT_POINTS)
async def test_intake_dies_during_keyed_submit(
    fleet: Fleet, client: Client, point: str, duplicate: bool
) -> None:
    """A client that resubmits with its key after intake died gets one job, run once."""
    intake = start(fleet, "intake", point)
    assert intake is not None
    fleet.worker()
    await client.stats()  # intake is up: the impatient submit below must reach it, not time out waiting
    impatient = Client(fleet.url, timeout=2)
    impatient.keyed_retry_s = 0  # it gives up at the first timeout, as a client without retries would
    await impatient.connect()
    with pytest.raises((TimeoutError, NatsTimeoutError)):
        await impatient.submit("probe.sleep", 0.01, key="order-7")
    await impatient.close()
    await crashed(intake)
    restart_clean(intake)
    reply = await client.submit("probe.sleep", 0.01, key="order-7")
    assert reply.duplicate is duplicate
    record = await final(client, reply.id)
    assert record.state == "succeeded"
    assert len(fleet.started(reply.id)) == 1
    assert len((await client.list()).jobs) == 1


async def test_intake_dies_between_timer_entry_and_record(fleet: Fleet, client: Client) -> None:
    """A delayed submit whose timer entry was written but not its record: the keyed retry stores the job,
    which starts once, not before its time; the early entry only makes the timer look at it."""
    intake = start(fleet, "intake", "records.after_timer_entry")
    assert intake is not None
    fleet.worker()
    await client.stats()  # intake is up: the impatient submit below must reach it, not time out waiting
    impatient = Client(fleet.url, timeout=2)
    impatient.keyed_retry_s = 0  # it gives up at the first timeout, as a client without retries would
    await impatient.connect()
    with pytest.raises((TimeoutError, NatsTimeoutError)):
        await impatient.submit("probe.sleep", 0.01, key="later-1", delay=0.5)
    await impatient.close()
    await crashed(intake)
    restart_clean(intake)
    reply = await client.submit("probe.sleep", 0.01, key="later-1", delay=0.5)
    assert (reply.state, reply.duplicate) == ("scheduled", False)
    record = await final(client, reply.id)
    assert record.state == "succeeded"
    (run,) = fleet.started(reply.id)
    assert run.at >= record.run_at.timestamp()


async def test_intake_dies_after_cancel_cas(fleet: Fleet, client: Client) -> None:
    """The cancel is stored but never sent to the worker: the reaper sees the stale attempt and stops it."""
    intake = start(fleet, "intake", "intake.cancel.after_cas")
    assert intake is not None
    fleet.worker()
    reply = await client.submit("probe.sleep", 60)
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    await client.stats()  # intake is up: the impatient submit below must reach it, not time out waiting
    impatient = Client(fleet.url, timeout=2)
    impatient.keyed_retry_s = 0  # it gives up at the first timeout, as a client without retries would
    await impatient.connect()
    with pytest.raises((TimeoutError, NatsTimeoutError)):
        await impatient.cancel(reply.id)
    await impatient.close()
    await crashed(intake)
    restart_clean(intake)
    assert (await client.get(reply.id)).state == "cancelled"

    async def worker_idle() -> bool:
        return (await client.stats()).workers.busy == 0

    await eventually(worker_idle, timeout=15, what="worker stopped the cancelled attempt")
    assert not [r for r in fleet.runs() if r.job_id == reply.id and r.event == "end"]


async def test_timer_dies_between_fire_and_ledger(fleet: Fleet, client: Client) -> None:
    """The fire's job is created, the ledger not yet written: the restarted timer finds the job and goes on."""
    timer = start(fleet, "timer", "timer.fire.after_create")
    assert timer is not None
    fleet.worker()
    await client.create_schedule("beat", "probe.sleep", None, every=1.0)
    await crashed(timer)
    restart_clean(timer)

    async def fired(n: int) -> bool:
        return (await client.schedule("beat")).fired >= n

    await eventually(lambda: fired(3), timeout=20, what="fires after the restart")
    record = await client.schedule("beat")
    jobs = [e.job_id for e in record.history if e.job_id]
    assert len(jobs) == len(set(jobs))
    assert not [e for e in record.history if e.missed]
    for job_id in jobs[:2]:
        await client.wait(job_id, timeout=20)
        assert len(fleet.started(job_id)) == 1


async def test_reaper_dies_after_rescue_cas(fleet: Fleet, client: Client) -> None:
    """A rescue stored just before the reaper died still leads to the job running elsewhere."""
    reaper = start(fleet, "reaper", "reaper.rescue.after_cas")
    assert reaper is not None
    doomed = fleet.worker()
    reply = await client.submit("probe.sleep", 1.0, backoff={"base_ms": 0})
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    doomed.kill()
    await crashed(reaper)
    restart_clean(reaper)
    fleet.worker()
    record = await final(client, reply.id)
    assert record.state == "succeeded"
    assert record.errors[0].kind == "lost"
    explained(record, len(fleet.started(reply.id)))


async def test_reaper_dies_between_history_and_purge(fleet: Fleet, client: Client) -> None:
    """A finished record written to history but still in the bucket: found all along, and the restarted
    reaper's replay completes the move without a second copy in history."""
    reaper = start(fleet, "reaper", "records.retire.after_history")
    fleet.worker()
    reply = await client.submit("probe.sleep", 0.01)
    await crashed(reaper)
    nc = await connect(fleet.url, "test")
    try:
        assert await copies(nc, reply.id) == 1
        assert (await client.get(reply.id)).state == "succeeded"
        restart_clean(reaper)
        await eventually(lambda: retired(nc, reply.id), timeout=20, what="the move completed")
    finally:
        await nc.close()
    assert (await client.get(reply.id)).state == "succeeded"
    assert len(fleet.started(reply.id)) == 1


@pytest.mark.parametrize(("point", "runs"), WORKER_POINTS)
async def test_worker_dies_mid_job(fleet: Fleet, client: Client, point: str, runs: int) -> None:
    """Whenever a worker dies, its job ends succeeded; a second run only when the first result was lost."""
    start(fleet, None, point)
    dying = fleet.worker(env={CRASH: point})
    reply = await client.submit("probe.sleep", 0.05, backoff={"base_ms": 0})
    await crashed(dying)
    fleet.worker()
    record = await final(client, reply.id)
    assert record.state == "succeeded"
    assert len(fleet.started(reply.id)) == runs
    explained(record, runs)
    if point != "worker.after_report":
        assert record.errors[0].kind == "lost"


def test_every_point_is_exercised() -> None:
    """The tests above cover every crash point there is."""
    covered = {point for _, point, _ in SERVICE_POINTS} | {
        point for point, _ in KEYED_SUBMIT_POINTS + WORKER_POINTS
    }
    covered |= WORKFLOW_POINTS
    covered |= {
        "intake.cancel.after_cas",
        "reaper.rescue.after_cas",
        "timer.fire.after_create",
        "records.after_timer_entry",
        "records.retire.after_history",
    }
    assert covered == POINTS
