"""Real processes: the four services and workers as separate programs, killed and stopped for real."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

from jetsched.devkit.fleet import Fleet
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def services(fleet: Fleet) -> Fleet:
    return fleet.start_services()


@pytest.fixture
async def proc_client(fleet: Fleet) -> AsyncIterator[Client]:
    async with Client(fleet.url, timeout=20) as client:
        await client.list(limit=1)
        yield client


async def test_services_as_processes(fleet: Fleet, proc_client: Client) -> None:
    """Jobs flow through four separate service processes to a worker process."""
    worker = fleet.worker("--concurrency", "4")
    replies = [await proc_client.submit("probe.sleep", 0.01) for _ in range(20)]
    records = [await proc_client.wait(r.id, timeout=30) for r in replies]
    assert {r.state for r in records} == {"succeeded"}
    assert {r.result for r in records} == {worker.pid}


@pytest.mark.serial
async def test_killed_worker_job_restarts_elsewhere(fleet: Fleet, proc_client: Client) -> None:
    """`kill -9` of a worker mid-job: the job is rescued and runs again on another worker within seconds."""
    doomed = fleet.worker()
    reply = await proc_client.submit("probe.sleep", 1.0, backoff={"base_ms": 0})
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    doomed.kill()
    killed_at = time.time()
    survivor = fleet.worker()
    record = await proc_client.wait(reply.id, timeout=30)
    assert (record.state, record.result, record.attempt) == ("succeeded", survivor.pid, 2)
    assert record.errors[0].kind == "lost"
    restart = next(r.at for r in fleet.started(reply.id) if r.pid == survivor.pid)
    print(f"worker death → rerun {restart - killed_at:.2f}s")
    assert restart - killed_at < 3.0


async def test_sigterm_drains_in_flight_work(fleet: Fleet, proc_client: Client) -> None:
    """On SIGTERM a worker takes nothing new, finishes what it holds, then exits cleanly."""
    worker = fleet.worker("--concurrency", "2")
    reply = await proc_client.submit("probe.sleep", 0.8)
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    assert worker.popen is not None
    os.kill(worker.popen.pid, signal.SIGTERM)

    async def draining() -> bool:  # the signal handled (a loaded machine may take a moment)
        return any(w.draining for w in await proc_client.workers())

    await eventually(draining, timeout=10, what="the worker announces draining")
    queued = await proc_client.submit("probe.sleep", 0.01)
    assert await asyncio.to_thread(worker.popen.wait, 20) == 0
    record = await proc_client.wait(reply.id, timeout=5)
    assert (record.state, record.attempt, record.result) == ("succeeded", 1, worker.pid)
    assert (await proc_client.get(queued.id)).state == "ready"


async def test_drain_timeout_hands_work_back(fleet: Fleet, proc_client: Client) -> None:
    """A job that outlasts the drain timeout is handed back unrun-counted and finished by another worker."""
    worker = fleet.worker("--drain-timeout", "200ms")
    reply = await proc_client.submit("probe.sleep", 3.0, max_attempts=1)
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    assert worker.popen is not None
    os.kill(worker.popen.pid, signal.SIGTERM)
    assert await asyncio.to_thread(worker.popen.wait, 20) == 0
    successor = fleet.worker()
    record = await proc_client.wait(reply.id, timeout=30)
    assert (record.state, record.result, record.releases) == ("succeeded", successor.pid, 1)


async def test_drain_timeout_leaves_a_thread_to_be_rescued_as_lost(fleet: Fleet, proc_client: Client) -> None:
    """A plain `def` handler still running at the drain timeout cannot be stopped: it is not handed back
    (`released` would run it elsewhere while this process runs it on, with no fault to show for it). Its
    session falls silent, the job is rescued as lost (an attempt spent, the cause recorded), and the
    process exits once the thread has returned."""
    worker = fleet.worker("--drain-timeout", "200ms")
    reply = await proc_client.submit("probe.sleep_sync", 3.0, max_attempts=2)
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    assert worker.popen is not None
    os.kill(worker.popen.pid, signal.SIGTERM)
    successor = fleet.worker()
    record = await proc_client.wait(reply.id, timeout=30)
    assert (record.state, record.result, record.attempt, record.releases) == (
        "succeeded",
        successor.pid,
        2,
        0,
    )
    assert [error.kind for error in record.errors] == ["lost"]
    assert await asyncio.to_thread(worker.popen.wait, 20) == 0
    ended = [r.pid for r in fleet.runs() if r.job_id == reply.id and r.event == "end"]
    assert len(ended) == 2  # twice: the first run was lost
    assert set(ended) == {worker.pid, successor.pid}


async def test_services_killed_and_restarted(fleet: Fleet, proc_client: Client) -> None:
    """`kill -9` of each service while jobs flow, then restart: every job still completes."""
    fleet.worker("--concurrency", "8")
    replies = [await proc_client.submit("probe.sleep", 0.05, delay=0.3 if n % 2 else None) for n in range(40)]
    for proc in fleet.services:
        proc.restart()
    replies += [await proc_client.submit("probe.sleep", 0.01) for _ in range(20)]
    records = [await proc_client.wait(r.id, timeout=60) for r in replies]
    assert {r.state for r in records} == {"succeeded"}


async def test_restarted_intake_lists_only_from_a_complete_index(fleet: Fleet, proc_client: Client) -> None:
    """An intake that has just started answers `jobs.list` only after replaying every record."""
    for _ in range(20):
        await asyncio.gather(*(proc_client.submit("nobody.home", None) for _ in range(100)))
    intake = next(proc for proc in fleet.services if proc.name == "intake")
    intake.kill()
    intake.start()
    listed, after = 0, None
    while True:
        page = await proc_client.list(state="ready", capability="nobody.home", limit=1000, after=after)
        listed += len(page.jobs)
        if (after := page.next) is None:
            break
    assert listed == 2000


async def test_nats_outage_does_not_rescue_healthy_jobs(
    nats_server: NatsServer, fleet: Fleet, proc_client: Client
) -> None:
    """A NATS restart longer than the liveness deadline is nobody's death: the running job is not re-run."""
    fleet.worker()
    reply = await proc_client.submit("probe.sleep", 6.0)
    await eventually(lambda: fleet.started(reply.id), timeout=20, what="job started")
    nats_server.kill()
    await asyncio.sleep(3.0)  # longer than a session's deadline (2 s), on purpose
    nats_server.start()
    record = await proc_client.wait(reply.id, timeout=30)
    assert (record.state, record.attempt, record.errors) == ("succeeded", 1, ())
    assert len(fleet.started(reply.id)) == 1


@pytest.mark.serial
async def test_views_recover_at_once_after_a_nats_restart(
    nats_server: NatsServer, fleet: Fleet, proc_client: Client
) -> None:
    """After nats-server restarts, every service's feed is back within seconds, not after heartbeat timeouts.

    A delayed job needs the timer's feed and then the dispatcher's; a schedule needs the timer's schedules
    feed to re-arm after each fire.
    """
    fleet.worker("--concurrency", "4")
    await proc_client.create_schedule("beat", "probe.sleep", None, every=1.0)
    await proc_client.wait((await proc_client.submit("probe.sleep", 0.0)).id, timeout=20)
    nats_server.kill()
    nats_server.start()
    restarted = time.monotonic()
    # A request written while the loop was blocked in start() went into the dead connection: poll briefly.
    async with Client(fleet.url, timeout=0.5) as probe:
        await eventually(lambda: _answers(probe), timeout=5, what="intake answering")
    reply = await proc_client.submit("probe.sleep", 0.0, delay=0.5)
    record = await proc_client.wait(reply.id, timeout=30)
    assert record.state == "succeeded"
    assert time.monotonic() - restarted < 8.0

    async def fired_since() -> bool:
        last = (await proc_client.schedule("beat")).last_fire
        return last is not None and last.timestamp() > time.time() - 1.5

    await eventually(fired_since, timeout=8, what="the schedule firing on time again")


async def _answers(client: Client) -> bool:
    try:
        await client.stats()
    except TimeoutError:
        return False
    return True
