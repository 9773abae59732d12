"""The Pythonic SDK against the real services: tasks that submit themselves, pushed results, the
blocking client, and the change announcements that make waiting cheap."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from nats.aio.msg import Msg

from jetsched.bus.connect import connect
from jetsched.bus.records import Records, Store
from jetsched.core import states, subjects
from jetsched.core.clock import SystemClock
from jetsched.core.models import JobChanged
from jetsched.devkit.nats_server import NatsServer
from jetsched.devkit.stack import Stack, running_worker
from jetsched.devkit.waiting import eventually
from jetsched.sdk import (
    Client,
    Fatal,
    Job,
    JobFailed,
    JobInfo,
    Middleware,
    Retry,
    Submit,
    SyncClient,
    Tasks,
    current_job,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

mail = Tasks()


@mail.task("email.send", priority=8, max_attempts=2)
async def send_email(to: str, subject: str = "hello") -> dict[str, object]:
    return {"to": to, "subject": subject, "attempt": current_job().attempt}


async def test_a_task_submits_itself_with_its_defaults(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """`await fn.submit(**fields)` stores a job with the decorator's defaults; the result is pushed."""
    async with running_worker(mail, nats_server.url):
        handle = await send_email.submit("a@example.com", subject="welcome")
        assert await handle.result(timeout=10) == {"to": "a@example.com", "subject": "welcome", "attempt": 1}
        urgent = await send_email.with_options(priority=9, key="once").submit(to="b@example.com")
        again = await send_email.with_options(key="once").submit(to="b@example.com")
        await urgent.result(timeout=10)
    job = await handle.info()
    assert (job.priority, job.max_attempts, job.payload) == (
        8,
        2,
        {"to": "a@example.com", "subject": "welcome"},
    )
    assert ((await urgent.info()).priority, again.duplicate, again.id) == (9, True, urgent.id)


async def test_result_raises_for_a_dead_job(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A job that ends dead makes `result()` raise `JobFailed`, carrying the record and its last error."""
    tasks = Tasks()

    @tasks.task("doomed")
    def doomed(job: Job) -> None:
        raise Fatal("no such address")

    async with running_worker(tasks, nats_server.url):
        handle = await client.submit("doomed")
        with pytest.raises(JobFailed, match="no such address") as failed:
            await handle.result(timeout=10)
    assert failed.value.job.state == "dead"


async def test_wait_is_pushed_not_polled(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """With the safety re-read an hour away, a wait still returns as soon as the job finishes: every
    write of a record is announced on its `changed` subject, and the wait hears it."""
    tasks = Tasks()
    gate = asyncio.Event()

    @tasks.task("gated")
    async def gated(job: Job) -> str:
        await gate.wait()
        return "done"

    async with running_worker(tasks, nats_server.url):
        reply = await client.submit("gated")
        seen: list[str] = []
        waiting = asyncio.create_task(
            client.wait(reply.id, timeout=20, poll=3600, on_change=lambda j: seen.append(j.state))
        )
        await eventually(lambda: seen[-1:] == ["running"], timeout=10, what="the wait saw it running")
        began = time.monotonic()
        gate.set()
        job = await waiting
    assert job.result == "done"
    assert time.monotonic() - began < 5
    assert seen == ["ready", "running", "succeeded"] or seen == ["running", "succeeded"]


async def test_a_lost_announcement_costs_time_not_the_wait(
    stack: Stack, client: Client, nats_server: NatsServer
) -> None:
    """A write whose announcement never went out (its writer died in between) is found by the wait's
    next read: written here through records that announce nothing."""
    reply = await client.submit("nobody.serves.this")
    nc = await connect(nats_server.url, "test-silent-writer")
    try:
        silent = Records([Store(nc, subjects.JOBS_BUCKET)], Store(nc, subjects.TIMERS_BUCKET))
        announcements: list[JobChanged] = []

        async def heard(msg: Msg) -> None:
            announcements.append(JobChanged.model_validate_json(msg.data))

        listening = await nc.subscribe(subjects.changed(reply.id), cb=heard)
        seen: list[str] = []
        waiting = asyncio.create_task(
            client.wait(reply.id, timeout=20, poll=0.2, on_change=lambda j: seen.append(j.state))
        )
        await eventually(lambda: seen, what="the wait's first read")
        record, revision = await silent.get(reply.id)
        await silent.update(states.cancel(record, SystemClock().now_ms()), revision)
        assert (await waiting).state == "cancelled"
        assert announcements == []
        await listening.unsubscribe()
    finally:
        await nc.close()


async def test_the_blocking_client(stack: Stack, nats_server: NatsServer) -> None:
    """`SyncClient` offers the same calls without an event loop, from any thread."""

    def from_plain_code() -> tuple[object, str, int]:
        with SyncClient(nats_server.url) as sync:
            handle = sync.submit("email.send", {"to": "c@example.com"})
            result = handle.result(timeout=10)
            job = sync.get(handle.id)
            typed = sync.submit_task(send_email.with_options(key="from-sync"), to="d@example.com")
            assert typed.result(timeout=10) == {"to": "d@example.com", "subject": "hello", "attempt": 1}
            return result, job.state, len(sync.list(capability="email.send").jobs)

    async with running_worker(mail, nats_server.url):
        result, state, listed = await asyncio.to_thread(from_plain_code)
    assert result == {"to": "c@example.com", "subject": "hello", "attempt": 1}
    assert (state, listed) == ("succeeded", 2)


class Recorder(Middleware):
    """Writes down what passes, raises every submit's priority, and doubles results."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def submit(self, call: Submit, call_next: Callable[[Submit], Awaitable[Any]]) -> Any:
        self.log.append(f"{self.name} submit {call.kind} {call.capability}")
        call.body["priority"] = 9
        return await call_next(call)

    async def run(self, job: Job, call_next: Callable[[Job], Awaitable[Any]]) -> Any:
        self.log.append(f"{self.name} run {job.capability} {job.attempt}")
        try:
            return 2 * await call_next(job)
        except Retry:
            self.log.append(f"{self.name} saw a retry")
            raise


async def test_middleware_wraps_submits_and_runs(stack: Stack, nats_server: NatsServer) -> None:
    """Client hooks see each submit and may change its body; worker hooks wrap each handler run, see
    what it raised, and may change what it returned. The first listed is the outermost."""
    log: list[str] = []
    tasks = Tasks()

    @tasks.task("twice")
    def twice(job: Job) -> int:
        if job.attempt == 1:
            raise Retry(delay=0)
        return int(job.payload)

    middleware = [Recorder("outer", log), Recorder("inner", log)]
    async with (
        Client(nats_server.url, middleware=middleware) as client,
        running_worker(tasks, nats_server.url, middleware=middleware),
    ):
        job = await (await client.submit("twice", 5)).wait(timeout=10)
    assert (job.result, job.priority) == (20, 9)
    assert log == [
        "outer submit job twice",
        "inner submit job twice",
        "outer run twice 1",
        "inner run twice 1",
        "inner saw a retry",
        "outer saw a retry",
        "outer run twice 2",
        "inner run twice 2",
    ]


async def test_progress_shows_in_jobs_get(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """A handler's `job.progress()` appears in `jobs.get` while it runs and stays after; reports are
    throttled (a tight loop of them neither slows the job nor floods NATS), the last value is not lost,
    and a report without the lease token changes nothing."""
    tasks = Tasks()
    gate = asyncio.Event()

    @tasks.task("crunch")
    async def crunch(job: Job) -> str:
        job.progress({"done": 1, "of": 3})
        await gate.wait()
        for n in range(5000):
            job.progress({"done": 2, "of": 3, "n": n})
        job.progress({"done": 3, "of": 3})
        return "crunched"

    nc = await connect(nats_server.url, "test-progress-listener")
    heard: list[bytes] = []

    async def listen(msg: Msg) -> None:
        heard.append(msg.data)

    try:
        async with running_worker(tasks, nats_server.url):
            reply = await client.submit("crunch")
            await nc.subscribe(subjects.progress(reply.id), cb=listen)
            running = await eventually(
                lambda: _with_progress(client, reply.id), timeout=10, what="progress in jobs.get"
            )
            assert running is not None
            assert running.progress is not None
            assert (running.state, running.progress.value, running.progress.attempt) == (
                "running",
                {"done": 1, "of": 3},
                1,
            )
            forged = {"id": reply.id, "attempt": 1, "token": "guessed", "seq": 99, "value": "forged"}
            await nc.publish(subjects.progress(reply.id), orjson.dumps(forged))
            began = time.monotonic()
            gate.set()
            done = await reply.wait(timeout=10)
            assert time.monotonic() - began < 2
        assert done.result == "crunched"
        final = await client.get(reply.id)
        assert final.progress is not None
        assert final.progress.value == {"done": 3, "of": 3}
        assert final.progress.at <= datetime.now(UTC)
        assert len(heard) <= 4  # the first, then within the throttle: one trailing report and the last
    finally:
        await nc.close()


async def _with_progress(client: Client, job_id: str) -> JobInfo | None:
    job = await client.get(job_id)
    return job if job.progress is not None else None


async def test_a_snooze_spends_no_attempt(stack: Stack, client: Client, nats_server: NatsServer) -> None:
    """`Retry(delay, spend_attempt=False)` runs the job again after the delay without counting the
    attempt: a job allowed one attempt snoozes twice and still succeeds, with no errors recorded."""
    tasks = Tasks()

    @tasks.task("patient", max_attempts=1)
    def patient(job: Job) -> int:
        if job.attempt < 3:
            raise Retry(delay=0.05, spend_attempt=False)
        return job.attempt

    async with running_worker(tasks, nats_server.url):
        job = await (await patient.submit()).wait(timeout=10)
    assert (job.state, job.result, job.attempt, job.snoozes, job.errors) == ("succeeded", 3, 3, 2, ())
