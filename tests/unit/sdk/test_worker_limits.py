"""The worker runtime's limits, without NATS: how much it holds, what a heartbeat that cannot be sent
does, and what an interrupted `def` handler reports."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from jetsched.core import subjects
from jetsched.core.models import Heartbeat, OutcomeStatus, WorkMessage, max_listed
from jetsched.sdk import Job, Tasks
from jetsched.sdk._progress import ProgressSender
from jetsched.sdk._worker import Worker

if TYPE_CHECKING:
    from jetsched.bus.direct import Connection

JOB = "01KBZ3R6X9T2M0Q7D5W8C4N1HE"


class Published:
    """Stands in for the connection: records what is published."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes, **_: Any) -> None:
        self.messages.append((subject, payload))


def work(attempt: int = 1, capability: str = "t.cap") -> WorkMessage:
    return WorkMessage(
        id=JOB,
        capability=capability,
        attempt=attempt,
        token="t",
        priority=5,
        timeout_s=60,
        created_at_ms=1,
        run_at_ms=1,
    )


def worker_for(tasks: Tasks, concurrency: int = 2) -> tuple[Worker, Published]:
    worker = Worker(tasks, concurrency=concurrency)
    published = Published()
    worker._nc = cast("Connection", published)
    return worker, published


def holding(worker: Worker, count: int) -> None:
    """Make the worker hold `count` attempts (the heartbeat lists only their keys)."""
    for attempt in range(1, count + 1):
        worker.held[JOB, attempt] = cast("asyncio.Task[None]", None)


@pytest.fixture
def tasks() -> Tasks:
    registry = Tasks()

    @registry.task("t.cap")
    async def cap(job: Job) -> int:
        return 1

    return registry


class TestHeld:
    async def test_work_beyond_what_a_heartbeat_may_list_is_dropped_unheld(self, tasks: Tasks) -> None:
        """Reports that cannot be stored keep their jobs held; at `max_listed` a new work message is not
        taken (not even to hand back, which would be held too): the heartbeats stay valid."""
        worker, _ = worker_for(tasks)
        holding(worker, max_listed(2))
        message = work(attempt=max_listed(2) + 1)
        worker._on_work(
            subjects.work("t.cap", worker.session).encode(), b"", message.model_dump_json().encode(), b""
        )
        assert len(worker.held) == max_listed(2)
        assert (JOB, message.attempt) not in worker.held
        Heartbeat.model_validate(worker._heartbeat().model_dump())

    async def test_a_heartbeat_that_cannot_be_built_is_logged_and_the_next_one_goes_out(
        self, tasks: Tasks, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Whatever a heartbeat runs into, `_beat_once` neither raises nor stops the ones after it."""
        worker, published = worker_for(tasks)
        holding(worker, max_listed(2) + 1)  # more than any heartbeat may list: it cannot be built
        with caplog.at_level(logging.INFO, logger="jetsched.worker"):
            await worker._beat_once()
            await worker._beat_once()
            assert published.messages == []
            assert [r.getMessage() for r in caplog.records] == ["heartbeat not sent"]  # once per run
            del worker.held[JOB, 1]
            await worker._beat_once()
        assert [subject for subject, _ in published.messages] == [subjects.heartbeat(worker.session)]
        assert caplog.records[-1].getMessage() == "heartbeats sent again"

    async def test_the_heartbeat_loop_outlives_a_failing_heartbeat(self, tasks: Tasks) -> None:
        worker, published = worker_for(tasks)
        worker.heartbeat_ms = 10
        holding(worker, max_listed(2) + 1)
        beats = asyncio.create_task(worker._heartbeats())
        try:
            await asyncio.sleep(0.05)
            assert not beats.done()
            del worker.held[JOB, 1]
            await asyncio.sleep(0.05)
            assert not beats.done()
            assert published.messages
        finally:
            beats.cancel()


def blocking(result: int) -> tuple[Tasks, threading.Event, threading.Event]:
    """Tasks with a `def` handler `t.sync` that says it `started`, waits to `go_on`, returns `result`."""
    tasks, started, go_on = Tasks(), threading.Event(), threading.Event()

    @tasks.task("t.sync")
    def blocked(job: Job) -> int:
        started.set()
        go_on.wait(10)
        return result

    return tasks, started, go_on


class TestInterruptedThread:
    """A `def` handler runs in a thread, which no cancellation stops."""

    async def run(self, worker: Worker, message: WorkMessage, started: threading.Event) -> asyncio.Task[Any]:
        handler = worker.tasks.handlers[message.capability]
        progress = ProgressSender(cast("Connection", Published()), message, worker.clock)
        running = asyncio.create_task(worker._call(message, handler, progress))
        assert await asyncio.to_thread(started.wait, 10)
        return running

    async def test_a_thread_still_running_is_not_reported(self) -> None:
        """Interrupted (the drain timeout) while its thread runs on: no outcome, not `released`."""
        tasks, started, go_on = blocking(1)
        worker, _ = worker_for(tasks)
        try:
            running = await self.run(worker, work(capability="t.sync"), started)
            running.cancel()
            assert await running is None
            assert worker._in_thread == set()
        finally:
            go_on.set()

    async def test_a_thread_never_started_is_released(self) -> None:
        """Interrupted before a thread took it (all of them busy): nothing ran, so it is handed back."""
        tasks, started, go_on = blocking(1)
        worker, _ = worker_for(tasks, concurrency=1)
        try:
            first = await self.run(worker, work(1, "t.sync"), started)
            handler = worker.tasks.handlers["t.sync"]
            progress = ProgressSender(cast("Connection", Published()), work(2))
            second = asyncio.create_task(worker._call(work(2, "t.sync"), handler, progress))
            await asyncio.sleep(0.05)
            second.cancel()
            outcome = await second
            assert outcome is not None
            assert outcome.status is OutcomeStatus.RELEASED
        finally:
            go_on.set()
        assert (await first) is not None

    async def test_a_thread_that_returned_as_it_was_interrupted_reports_its_result(self) -> None:
        """Its handler finished, the loop not yet told: what it did is reported, not `released`."""
        tasks, started, go_on = blocking(7)
        worker, _ = worker_for(tasks)
        running = await self.run(worker, work(capability="t.sync"), started)
        go_on.set()
        # Blocking the loop: the thread returns, and the loop hears of it only after the cancel.
        time.sleep(0.1)  # noqa: ASYNC251
        running.cancel()
        outcome = await running
        assert outcome is not None
        assert (outcome.status, outcome.result) == (OutcomeStatus.SUCCEEDED, 7)

    async def test_an_async_handler_interrupted_is_released(self, tasks: Tasks) -> None:
        """A coroutine does stop when cancelled: it is handed back (`released`), as before."""
        started = threading.Event()

        @tasks.task("t.async")
        async def waits(job: Job) -> int:
            started.set()
            await asyncio.Event().wait()
            return 1

        worker, _ = worker_for(tasks)
        running = await self.run(worker, work(capability="t.async"), started)
        running.cancel()
        outcome = await running
        assert outcome is not None
        assert outcome.status is OutcomeStatus.RELEASED
