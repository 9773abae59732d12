"""Schedules through the real services: fires exactly once per nominal time, whatever stops or races."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from datetime import datetime, timedelta

import nats
import pytest

from jetsched.core import cron, subjects
from jetsched.core.schedules import fire_job_id
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, JetschedApiError, Job, JobInfo, Tasks
from jetsched.timer.service import TimerService

from .conftest import ms


def tick_tasks(seen: list[tuple[str, int]]) -> Tasks:
    tasks = Tasks()

    @tasks.task("tick")
    async def tick(job: Job) -> None:
        seen.append((job.id, job.attempt))

    return tasks


async def jobs_of(client: Client, schedule_id: str) -> list[JobInfo]:
    return [j for j in (await client.list(limit=1000)).jobs if j.schedule_id == schedule_id]


async def test_interval_schedule_fires_once_per_nominal_time(nats_server: NatsServer) -> None:
    """Two replicas of every service race for every fire; each nominal time still makes exactly one job."""
    seen: list[tuple[str, int]] = []
    async with (
        Stack(nats_server.url, copies=2),
        Client(nats_server.url) as client,
        running_worker(tick_tasks(seen), nats_server.url),
    ):
        created = await client.create_schedule("every-second", "tick", {"n": 1}, every=1.0)
        assert created.next_fire is not None
        await eventually(lambda: len(seen) >= 4, timeout=15, what="four fires ran")
        await client.schedule("every-second", "pause")
        record = await client.schedule("every-second")
        jobs = await jobs_of(client, "every-second")
    nominal = sorted(ms(j.fire_at) for j in jobs)
    assert [b - a for a, b in itertools.pairwise(nominal)] == [1000] * (len(nominal) - 1), nominal
    assert {j.id for j in jobs} == {fire_job_id("every-second", t) for t in nominal}
    assert max(Counter(job_id for job_id, _ in seen).values()) == 1
    assert record.fired == len(jobs)
    assert [e.job_id for e in record.history][-len(jobs) :] == [
        fire_job_id("every-second", t) for t in nominal
    ]


async def test_cron_schedule_preview_pause_resume_delete(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A 6-field cron schedule fires every second; pause stops it, resume restarts it, delete ends it."""
    seen: list[tuple[str, int]] = []
    async with running_worker(tick_tasks(seen), nats_server.url):
        await client.create_schedule("cron-sec", "tick", cron="* * * * * *", timezone="Europe/Berlin")
        preview = await client.preview_schedule("cron-sec", count=3)
        assert len(preview.fires) == 3
        assert preview.fires[0].local.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
        assert preview.fires[0].local == preview.fires[0].utc
        await eventually(lambda: len(seen) >= 2, timeout=10, what="cron fired")
        await client.schedule("cron-sec", "pause")
        paused_at = len(seen)
        await asyncio.sleep(1.5)  # a paused schedule must stay quiet for more than one period
        assert len(seen) <= paused_at + 1
        await client.schedule("cron-sec", "resume")
        await eventually(lambda: len(seen) >= paused_at + 3, timeout=10, what="fires after resume")
        await client.delete_schedule("cron-sec")
        with pytest.raises(JetschedApiError, match="not_found"):
            await client.schedule("cron-sec")
        with pytest.raises(JetschedApiError, match="already_exists"):
            await client.create_schedule("cron-sec", "tick", every=1)


async def test_bad_schedules_refused(stack: Stack, client: Client) -> None:
    """Unknown zones, bad cron, both or neither of cron/every: structured errors, nothing stored."""
    for options in (
        {"cron": "0 25 * * *"},
        {"cron": "* * * * *", "every": 5},
        {},
        {"every": 5, "timezone": "Moon/Base"},
    ):
        with pytest.raises(JetschedApiError) as info:
            await client.create_schedule("bad", "tick", **options)
        assert info.value.code == "invalid_field"
    assert await client.schedules() == []


@pytest.mark.slow
@pytest.mark.parametrize("misfire", ["skip", "once", "all"])
async def test_whole_system_stopped_across_fires(nats_server: NatsServer, misfire: str) -> None:
    """Everything stops for ~3.6 s across three nominal fires; on restart each misfire policy does its part."""
    seen: list[tuple[str, int]] = []
    async with Client(nats_server.url) as client:
        async with Stack(nats_server.url):
            await client.create_schedule("s", "tick", every=1.0, misfire=misfire)
            spec = {
                "id": "s",
                "every_ms": 1000,
                "misfire": misfire,
                "misfire_grace_ms": 300,
                "job": {"capability": "tick"},
            }
            await client.request("jetsched.api.schedules.update", spec)
            await eventually(lambda: _fired(client, "s", 1), timeout=10, what="first fire")
            before = await client.schedule("s")
        await asyncio.sleep(3.6)
        async with Stack(nats_server.url), running_worker(tick_tasks(seen), nats_server.url):
            await eventually(
                lambda: _handled_after(client, "s", before.last_fire, 4),
                timeout=15,
                what="the missed fires were dealt with",
            )
            after = await client.schedule("s")
    # The first look after the restart dealt with every fire that came while nothing ran.
    assert before.last_fire is not None
    after_stop = [e for e in after.history if e.nominal > before.last_fire]
    first_look = [e for e in after_stop if e.at == after_stop[0].at]
    late = [e for e in first_look if e.at - e.nominal > timedelta(milliseconds=300)]
    assert len(late) >= 3
    assert all(e.missed for e in first_look if e.job_id is None)
    ran = [e for e in first_look if e.job_id is not None]
    if misfire == "skip":
        assert not [e for e in late if e.job_id]
    elif misfire == "once":
        assert len(ran) == 1
    else:
        assert ran == first_look


async def _fired(client: Client, schedule_id: str, n: int) -> bool:
    return (await client.schedule(schedule_id)).fired >= n


async def _handled_after(client: Client, schedule_id: str, after: datetime | None, n: int) -> bool:
    history = (await client.schedule(schedule_id)).history
    return sum(after is None or e.nominal > after for e in history) >= n


@pytest.mark.slow
@pytest.mark.parametrize("overlap", ["skip", "buffer_one", "cancel_previous"])
async def test_overlap_policies(stack: Stack, client: Client, nats_server: NatsServer, overlap: str) -> None:
    """A 1 s schedule whose jobs take 2.5 s: each overlap policy does what it says, and records it."""
    tasks = Tasks()
    running: list[str] = []
    peak = 0
    interrupted: list[str] = []

    @tasks.task("slow")
    async def slow(job: Job) -> None:
        nonlocal peak
        running.append(job.id)
        peak = max(peak, len(running))
        try:
            await asyncio.sleep(2.5)
        except asyncio.CancelledError:
            interrupted.append(job.id)
            raise
        finally:
            running.remove(job.id)

    async with running_worker(tasks, nats_server.url, concurrency=4):
        await client.create_schedule("o", "slow", every=1.0, overlap=overlap)
        await eventually(
            lambda: _handled_after(client, "o", None, 5), timeout=20, what="five fires dealt with"
        )
        await client.schedule("o", "pause")
        record = await client.schedule("o")
    reasons = [e.missed for e in record.history if e.missed]
    if overlap == "skip":
        assert peak == 1
        assert reasons
        assert all("overlap=skip" in why for why in reasons)
    elif overlap == "buffer_one":
        assert peak == 1
        assert record.buffered is not None or any("buffer" in why for why in reasons)
    else:
        assert interrupted, "the previous run was not cancelled"
        cancelled = [(await client.get(job_id)).state for job_id in interrupted]
        assert set(cancelled) == {"cancelled"}


async def test_a_stored_schedule_past_the_step_cap_is_quarantined_once(
    stack: Stack,
    client: Client,
    nats_server: NatsServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stored schedule whose next fire cannot be found within the cron step cap (intake refuses such a
    cron; an older version or a hand could store one) is set aside by the timer: logged once with its id,
    listed by `doctor`, no longer armed. (It used to be dropped without a word: it never fired again.)"""
    caplog.set_level(logging.WARNING, logger="jetsched.bus.quarantine")
    await client.create_schedule("costly", "tick", cron="0 0 1 1 *")  # yearly: no fire meanwhile
    (timer,) = stack.of(TimerService)
    assert isinstance(timer, TimerService)
    wheel = timer.timers.driver.wheel
    await eventually(lambda: "schedule:costly" in wheel, what="the schedule armed")
    monkeypatch.setattr(cron, "MAX_STEPS", 0)  # from now on, every evaluation passes the cap
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().key_value(subjects.SCHEDULES_BUCKET)
        stored = await kv.get("costly")
        assert stored.value is not None
        await kv.put("costly", stored.value)  # the same schedule again, as another writer stores it

        async def listed() -> bool:
            found = (await client.request(subjects.api("doctor.list"), {}))["quarantined"]
            return any(item["bucket"] == "schedules" and item["key"] == "costly" for item in found)

        await eventually(listed, what="the schedule quarantined")
    finally:
        await nc.close()
    logged = [
        r for r in caplog.records if r.getMessage() == "quarantined" and getattr(r, "key", None) == "costly"
    ]
    assert len(logged) == 1
    assert "TooManySteps" in logged[0].__dict__["reason"]
    assert timer.quarantined.count == 1
    assert "schedule:costly" not in wheel


async def test_costly_cron_neither_stalls_intake_nor_is_stored(
    stack: Stack, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sparse runs of dense fires (every second of 29 February, of September, …) are created and listed
    promptly; one whose evaluation passes the step cap is refused on `cron`, nothing stored."""
    exprs = ("* * * 29 2 *", "* * * * 9 *", "*/5 * * * * 1-5", "* * * 1 * *")
    for n, expr in enumerate(exprs):
        created = await asyncio.wait_for(
            client.create_schedule(f"dense-{n}", "tick", cron=expr, timezone="Europe/Berlin"), 10
        )
        assert created.next_fire is not None
    await asyncio.wait_for(client.stats(), 5)
    assert len(await asyncio.wait_for(client.schedules(), 10)) == len(exprs)
    monkeypatch.setattr(cron, "MAX_STEPS", 3)
    with pytest.raises(JetschedApiError) as info:
        await client.create_schedule("capped", "tick", cron="* * * * * *")
    assert (info.value.code, info.value.field) == ("invalid_field", "cron")
    assert len(await client.schedules()) == len(exprs)
