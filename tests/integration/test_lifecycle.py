"""The whole one-off job lifecycle through the four services and a worker."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest

from jetsched.bus.connect import connect
from jetsched.bus.records import Records, encode
from jetsched.core import states
from jetsched.core.changes import headers_of
from jetsched.core.clock import SystemClock
from jetsched.core.ids import new_ulid
from jetsched.core.models import JobRequest
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import Client, Fatal, Job, Retry, Tasks

from .conftest import Executions

FAST = {"base_ms": 20, "factor": 2.0, "jitter": 0.0}


async def test_success(stack: Stack, client: Client, nats_server: NatsServer, executions: Executions) -> None:
    """A job runs once on a capable worker; its result and timestamps are stored."""
    tasks = Tasks()

    @tasks.task("math.add")
    async def add(job: Job) -> int:
        executions.record(job.id, job.attempt)
        return int(sum(job.payload))

    async with running_worker(tasks, nats_server.url):
        reply = await client.submit("math.add", [1, 2, 3])
        record = await client.wait(reply.id)
    assert (record.state, record.result, record.attempt) == ("succeeded", 6, 1)
    assert record.started_at
    assert record.finished_at
    assert record.created_at <= record.started_at <= record.finished_at
    assert executions.runs == [(reply.id, 1)]


async def test_sync_handler_runs_in_thread(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A plain `def` handler runs off the event loop."""
    tasks = Tasks()

    @tasks.task("blocking")
    def blocking(job: Job) -> str:
        time.sleep(0.01)
        return threading.current_thread().name

    async with running_worker(tasks, nats_server.url):
        record = await client.wait((await client.submit("blocking")).id)
    assert record.result.startswith("jetsched-job")


async def test_retries_with_backoff_then_dead(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A failing job is retried after growing delays, then dead with its whole error history."""
    tasks = Tasks()
    starts: list[float] = []

    @tasks.task("flaky")
    async def flaky(job: Job) -> None:
        starts.append(time.monotonic())
        raise ValueError(f"failure {job.attempt}")

    async with running_worker(tasks, nats_server.url):
        reply = await client.submit("flaky", max_attempts=3, backoff={**FAST, "base_ms": 100})
        record = await client.wait(reply.id)
    assert record.state == "dead"
    assert [(e.attempt, e.kind, e.message) for e in record.errors] == [
        (1, "error", "failure 1"),
        (2, "error", "failure 2"),
        (3, "error", "failure 3"),
    ]
    assert "ValueError" in (record.errors[0].traceback or "")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.1
    assert gaps[1] >= 0.2
    view = await client.get(reply.id)
    assert view.last_error
    assert view.last_error.message == "failure 3"


async def test_flaky_succeeds_on_retry(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A job that fails twice then succeeds ends succeeded on attempt 3."""
    tasks = Tasks()

    @tasks.task("flaky")
    async def flaky(job: Job) -> int:
        if job.attempt < 3:
            raise RuntimeError("not yet")
        return job.attempt

    async with running_worker(tasks, nats_server.url):
        record = await client.wait((await client.submit("flaky", backoff=FAST)).id)
    assert (record.state, record.result, len(record.errors)) == ("succeeded", 3, 2)


async def test_fatal_and_retry_after(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """`Fatal` goes dead at once; `Retry(delay)` runs again no sooner than asked."""
    tasks = Tasks()
    starts: dict[int, float] = {}

    @tasks.task("fatal")
    async def fatal(job: Job) -> None:
        raise Fatal("bad input")

    @tasks.task("later")
    async def later(job: Job) -> int:
        starts[job.attempt] = time.monotonic()
        if job.attempt == 1:
            raise Retry(delay=0.3)
        return job.attempt

    async with running_worker(tasks, nats_server.url):
        dead = await client.wait((await client.submit("fatal", max_attempts=10)).id)
        done = await client.wait((await client.submit("later")).id)
    assert (dead.state, dead.attempt, dead.errors[0].kind) == ("dead", 1, "fatal")
    assert (done.state, done.result) == ("succeeded", 2)
    assert starts[2] - starts[1] >= 0.3


async def test_timeout(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """An attempt past its timeout is cancelled and recorded as a timeout."""
    tasks = Tasks()

    @tasks.task("slow")
    async def slow(job: Job) -> None:
        await asyncio.sleep(30)

    async with running_worker(tasks, nats_server.url):
        record = await client.wait((await client.submit("slow", timeout=0.2, max_attempts=1)).id)
    assert record.state == "dead"
    assert record.errors[0].kind == "timeout"


async def test_delayed_never_early(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Delayed and run_at jobs start at or after their due time, not before."""
    tasks = Tasks()
    started: dict[str, int] = {}

    @tasks.task("at")
    async def at(job: Job) -> None:
        started[job.id] = int(time.time() * 1000)

    async with running_worker(tasks, nats_server.url):
        replies = [await client.submit("at", delay=d) for d in (0.05, 0.2, 0.4, 0.2, 0.05)]
        records = [await client.wait(r.id) for r in replies]
    for record in records:
        assert record.started_at
        assert record.started_at >= record.run_at
        assert started[record.id] >= record.run_at.timestamp() * 1000


async def test_waits_for_a_capable_worker(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A job with no capable worker waits, says why, and runs when one arrives."""
    tasks = Tasks()

    @tasks.task("other")
    async def other(job: Job) -> None: ...

    rare = Tasks()

    @rare.task("rare")
    async def handle(job: Job) -> str:
        return "ran"

    async with running_worker(tasks, nats_server.url):
        reply = await client.submit("rare")
        await asyncio.sleep(0.3)  # give a wrong dispatch the chance to happen
        view = await client.get(reply.id)
        assert view.state == "ready"
        assert view.waiting == "no live worker with capability 'rare'"
        async with running_worker(rare, nats_server.url):
            record = await client.wait(reply.id)
    assert record.result == "ran"


async def test_concurrency_never_exceeded(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """No worker ever runs more jobs at once than it declared."""
    tasks = Tasks()
    now_running = 0
    peak = 0

    @tasks.task("c")
    async def c(job: Job) -> None:
        nonlocal now_running, peak
        now_running += 1
        peak = max(peak, now_running)
        await asyncio.sleep(0.02)
        now_running -= 1

    async with running_worker(tasks, nats_server.url, concurrency=3):
        replies = await asyncio.gather(*(client.submit("c") for _ in range(40)))
        for reply in replies:
            await client.wait(reply.id)
    assert peak == 3


async def test_cancel(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Cancelling a scheduled job stops it; cancelling a running one reaches its handler."""
    tasks = Tasks()
    entered = asyncio.Event()
    interrupted = asyncio.Event()

    @tasks.task("long")
    async def long(job: Job) -> None:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    async with running_worker(tasks, nats_server.url):
        later = await client.submit("long", delay=60)
        assert (await client.cancel(later.id)).state == "cancelled"
        now = await client.submit("long")
        await asyncio.wait_for(entered.wait(), 10)
        assert (await client.cancel(now.id)).state == "cancelled"
        await asyncio.wait_for(interrupted.wait(), 10)
        view = await client.get(now.id)
    assert view.state == "cancelled"
    with pytest.raises(Exception, match="invalid_state"):
        await client.cancel(now.id)


async def test_dead_letters(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """Dead jobs are listed, can be retried (and then succeed), and purged."""
    tasks = Tasks()
    healed = False

    @tasks.task("d")
    async def d(job: Job) -> str:
        if not healed:
            raise ValueError("broken")
        return "fixed"

    async with running_worker(tasks, nats_server.url):
        first = await client.submit("d", max_attempts=1)
        second = await client.submit("d", max_attempts=1)
        await client.wait(first.id)
        await client.wait(second.id)
        dead = await client.dead()
        assert {j.id for j in dead.jobs} == {first.id, second.id}
        healed = True
        assert (await client.retry_dead(first.id)).state == "ready"
        record = await client.wait(first.id)
        assert (record.state, record.result, record.attempt) == ("succeeded", "fixed", 2)
        assert (await client.purge_dead(second.id)).purged is True
        with pytest.raises(Exception, match="not_found"):
            await client.get(second.id)
    assert [j.id for j in (await client.dead()).jobs] == []


async def test_a_revived_expired_job_runs(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A job that expired unstarted, retried from the dead letters, runs: its deadline went with it."""
    tasks = Tasks()

    @tasks.task("late")
    async def late(job: Job) -> str:
        return "ran"

    expired = await client.wait((await client.submit("late", expires_in=0.1)).id, timeout=10)
    assert (expired.state, expired.errors[-1].kind) == ("dead", "expired")
    async with running_worker(tasks, nats_server.url):
        assert (await client.retry_dead(expired.id)).state == "ready"
        record = await client.wait(expired.id, timeout=10)
    assert (record.state, record.result, record.expires_at) == ("succeeded", "ran", None)


async def test_list_pages(stack: Stack, client: Client) -> None:
    """Listing by state and capability pages through jobs in submission order."""
    ids = [(await client.submit("x" if n % 2 else "y", delay=60)).id for n in range(7)]
    await eventually(lambda: _count(client, "x", 3), what="index caught up")
    first = await client.list(state="scheduled", capability="x", limit=2)
    second = await client.list(state="scheduled", capability="x", limit=2, after=first.next)
    listed = [j.id for j in first.jobs + second.jobs]
    assert listed == [i for n, i in enumerate(ids) if n % 2]
    assert second.next is None


async def _count(client: Client, capability: str, n: int) -> bool:
    return len((await client.list(capability=capability)).jobs) == n


async def test_a_record_landing_after_its_timer_entry_came_due_still_runs(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """Writers put a job's timer entry before its record; a record that lands late is waited for, not lost.

    (A reaper's retry with a 10 ms backoff can have its entry come due before its CAS has landed.)
    """
    tasks = Tasks()

    @tasks.task("late")
    async def late(job: Job) -> int:
        return job.attempt

    nc = await connect(nats_server.url, "test")
    records = Records.open(nc)
    now = SystemClock().now_ms()
    record = states.accept(JobRequest(delay_ms=50), new_ulid(now), "late", now, None)
    await records.timers.put(record.id, f"{record.run_at_ms} 0".encode())
    await asyncio.sleep(0.5)  # the entry comes due; its record is not there yet
    await records.store_of(record.id).put_if(record.id, encode(record), 0, headers_of(record))
    await nc.close()
    async with running_worker(tasks, nats_server.url):
        final = await client.wait(record.id, timeout=20)
    assert (final.state, final.result) == ("succeeded", 1)
